package postgres

import (
	"maps"
	"slices"

	"github.com/sluicehq/sluice/pipelines"
)

// Config is the postgres sink block of a pipeline file: rows and the
// checkpoint are written in one transaction.
type Config struct {
	DSN         string            `yaml:"dsn" required:"true" example:"${PG_DSN}"`
	Table       string            `yaml:"table" required:"true" example:"clicks"`
	Columns     map[string]string `yaml:"columns" doc:"column: SOURCE[::TYPE]; SOURCE is key, value, topic, partition, offset, timestamp or value.FIELD.PATH"`
	CreateTable bool              `yaml:"create-table"`
	UpsertKey   []string          `yaml:"upsert-key"`
}

// Validate checks the column mapping as New does, so lint reports a
// wrong source or type; New checks the DSN and the table name.
func (c *Config) Validate(k *pipelines.Check) {
	if !k.OK("columns") {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(c.Columns)) {
		if _, err := parseColumns(map[string]string{name: c.Columns[name]}); err != nil {
			k.Errorf("columns."+name, "%s.%s", k.Path(""), err)
		}
	}
}
