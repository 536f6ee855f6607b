package postgres

import "github.com/sluicehq/sluice/pipelines"

// Config is the postgres sink block of a pipeline file: rows and the
// checkpoint are written in one transaction.
type Config struct {
	DSN         string            `yaml:"dsn" required:"true" example:"${PG_DSN}"`
	Table       string            `yaml:"table" required:"true" example:"clicks"`
	Columns     map[string]string `yaml:"columns"`
	CreateTable bool              `yaml:"create-table"`
	UpsertKey   []string          `yaml:"upsert-key"`
}

// Validate has nothing to add to the tags; New checks the DSN, the table
// name and the column mapping.
func (c *Config) Validate(*pipelines.Check) {}
