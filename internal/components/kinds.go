package components

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/plugins/host"
	"github.com/sluicehq/sluice/sinks/file"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	"github.com/sluicehq/sluice/sinks/postgres"
	"github.com/sluicehq/sluice/sinks/stdout"
	"github.com/sluicehq/sluice/sources/generate"
	"github.com/sluicehq/sluice/sources/kafka"
	"github.com/sluicehq/sluice/steps/aggregate"
	"github.com/sluicehq/sluice/steps/dedupe"
	"github.com/sluicehq/sluice/steps/repartition"
)

// Builtin is the table of every source, sink and step kind: one line per
// kind, naming its YAML key, its capabilities and its build function (the
// build function's parameter type is the kind's block). The loader and
// lint read it through Kinds, the README reference through
// pipelines.WriteReference, Build through the build functions.
var Builtin = Table{
	Sources: []Kind[engine.Source]{
		NewKind("generate", pipelines.Caps{}, buildGenerate),
		NewKind("kafka", pipelines.Caps{Tasks: true}, buildKafkaSource),
	},
	Sinks: []Kind[engine.Sink]{
		NewKind("file", pipelines.Caps{Transactional: true, DeadLetters: pipelines.DeadLettersKept, Tasks: true}, buildFile),
		NewKind("stdout", pipelines.Caps{}, buildStdout),
		NewKind("postgres", pipelines.Caps{Transactional: true, DeadLetters: pipelines.DeadLettersInTable, Tasks: true}, buildPostgres),
		NewKind("kafka", pipelines.Caps{Transactional: true, DeadLetters: pipelines.DeadLettersInTopic, Tasks: true}, buildKafkaSink),
	},
	Steps: []Kind[engine.Transform]{
		NewKind("plugin", pipelines.Caps{}, buildPlugin),
		NewKind("aggregate", pipelines.Caps{Stateful: true}, buildAggregate),
		NewKind("dedupe", pipelines.Caps{Stateful: true}, buildDedupe),
		NewKind("repartition", pipelines.Caps{Stage: true}, buildRepartition),
	},
}

// Table is a table of kinds by role. A test adds a kind by appending to a
// copy of Builtin.
type Table struct {
	Sources []Kind[engine.Source]
	Sinks   []Kind[engine.Sink]
	Steps   []Kind[engine.Transform]
}

// Kind is one entry: what the loader reads (pipelines.Kind) and how to
// build the component, T being engine.Source, engine.Sink or
// engine.Transform.
type Kind[T any] struct {
	pipelines.Kind
	Build func(ctx context.Context, cfg pipelines.Config, env *Env) (T, error)
}

// NewKind makes an entry from a build function on the kind's own block
// type C, so an entry is one line and the block type is said once. ctx
// bounds only the building.
func NewKind[T any, C any, P interface {
	*C
	pipelines.Config
}](key string, caps pipelines.Caps, build func(ctx context.Context, cfg P, env *Env) (T, error)) Kind[T] {
	return Kind[T]{
		Kind: pipelines.Kind{Key: key, Caps: caps, Config: func() pipelines.Config { return P(new(C)) }},
		Build: func(ctx context.Context, cfg pipelines.Config, env *Env) (T, error) {
			c, ok := cfg.(P)
			if !ok {
				var zero T
				return zero, fmt.Errorf("%s: the block is a %T, not a %T", key, cfg, P(nil))
			}
			return build(ctx, c, env)
		},
	}
}

// Kinds is the part of the table the loader, lint and the reference read.
func (t *Table) Kinds() *pipelines.Kinds {
	k := &pipelines.Kinds{}
	for _, s := range t.Sources {
		k.Sources = append(k.Sources, s.Kind)
	}
	for _, s := range t.Sinks {
		k.Sinks = append(k.Sinks, s.Kind)
	}
	for _, s := range t.Steps {
		k.Steps = append(k.Steps, s.Kind)
	}
	return k
}

// Load reads and validates the pipeline file at path with the table's kinds.
func (t *Table) Load(path string) (*pipelines.Spec, error) { return pipelines.Load(path, t.Kinds()) }

// Parse decodes and validates one pipeline file's contents with the
// table's kinds; see pipelines.Parse.
func (t *Table) Parse(name string, data []byte, env func(string) (string, bool)) (*pipelines.Spec, error) {
	return pipelines.Parse(name, data, env, t.Kinds())
}

func find[T any](kinds []Kind[T], key string) *Kind[T] {
	for i := range kinds {
		if kinds[i].Key == key {
			return &kinds[i]
		}
	}
	return nil
}

func buildGenerate(ctx context.Context, cfg *generate.Config, env *Env) (engine.Source, error) {
	return generate.New(*cfg)
}

func buildKafkaSource(ctx context.Context, k *kafka.Settings, env *Env) (engine.Source, error) {
	addrs, err := env.Brokers(k.Cluster())
	if err != nil {
		return nil, err
	}
	group := k.Group
	if group == "" {
		group = env.Spec.Name
	}
	conn := kafka.Connection{Brokers: addrs, TLS: k.TLS, SASL: k.SASL}
	if k.Mode == "receiver" {
		walDir := ""
		if k.WALEnabled() {
			walDir = filepath.Join(env.DataDir, "wal", env.Spec.Name)
		}
		return kafka.NewReceiver(kafka.ReceiverConfig{
			Conn: conn, Topics: k.Topics, Pattern: k.Pattern, Start: k.Start, Group: group,
			BlockInterval: k.BlockInterval.D(), MaxRate: k.MaxRate, WALDir: walDir,
			SkipLoss: k.OnDataLoss == "skip", SkipCorrupt: k.OnCorrupt == "skip", Delivery: engine.Delivery(env.Spec.Delivery), Pipeline: env.Spec.Name,
			Logger: env.Logger, Metrics: env.KafkaMetrics,
		})
	}
	var tasks *kafka.Group
	if env.SplitIntoTasks() {
		if tasks, err = kafka.JoinGroup(kafka.GroupConfig{Conn: conn, Group: group, Topics: k.Topics, Pattern: k.Pattern,
			SessionTimeout: k.SessionTimeout.D(), MemberDir: filepath.Join(env.DataDir, "members"),
			Pipeline: env.Spec.Name, Logger: env.Logger}); err != nil {
			return nil, err
		}
		env.Tasks = tasks
	}
	return kafka.NewDirect(kafka.DirectConfig{
		Conn: conn, Topics: k.Topics, Pattern: k.Pattern, Start: k.Start, Group: group, Tasks: tasks,
		MaxRate: k.MaxRate, SkipLoss: k.OnDataLoss == "skip", SkipCorrupt: k.OnCorrupt == "skip", Pipeline: env.Spec.Name,
		Trim: k.Internal && env.TrimInternalTopics, Logger: env.Logger, Metrics: env.KafkaMetrics,
	})
}

func buildFile(ctx context.Context, cfg *file.Config, env *Env) (engine.Sink, error) {
	dir := ""
	if env.DeadLetter != nil {
		dir = env.DeadLetter.File
	}
	return file.New(*cfg, env.Logger, dir)
}

func buildStdout(ctx context.Context, cfg *stdout.Config, env *Env) (engine.Sink, error) {
	w := env.Stdout
	if w == nil {
		w = os.Stdout
	}
	return stdout.New(*cfg, w), nil
}

func buildPostgres(ctx context.Context, cfg *postgres.Config, env *Env) (engine.Sink, error) {
	var table string
	if env.DeadLetter != nil {
		table = env.DeadLetter.Table
	}
	return postgres.New(*cfg, env.Logger, postgres.DeadLetterTable(table))
}

func buildKafkaSink(ctx context.Context, k *kafkasink.Settings, env *Env) (engine.Sink, error) {
	addrs, err := env.Brokers(k.Cluster())
	if err != nil {
		return nil, err
	}
	cfg := kafkasink.Config{
		Brokers: addrs, Topic: k.Topic, CheckpointTopic: k.CheckpointTopic,
		TransactionalID: k.TransactionalID, Compression: k.Compression,
		TLS: k.TLS, SASL: k.SASL, Logger: env.Logger,
	}
	if env.DeadLetter != nil {
		cfg.DeadLetterTopic = env.DeadLetter.Topic
	}
	if env.Tasks != nil {
		// Split into tasks (on the source's cluster, SplitIntoTasks): the
		// sink commits the positions as the source group's offsets.
		g, ok := env.Tasks.(kafkasink.TaskGroup)
		if !ok {
			return nil, fmt.Errorf("kafka sink: the pipeline is split into tasks by a %T, which is not a Kafka group", env.Tasks)
		}
		cfg.Tasks = g
	}
	return kafkasink.New(cfg)
}

func buildPlugin(ctx context.Context, s *host.Step, env *Env) (engine.Transform, error) {
	plugin := s.Plugin
	if !host.IsBuiltinName(plugin) {
		plugin = env.Spec.Resolve(plugin)
	}
	t, err := host.New(ctx, host.Config{
		Pipeline: env.Spec.Name, Name: fmt.Sprintf("%s#%d", filepath.Base(s.Plugin), env.Step+1), Plugin: plugin,
		Settings: s.Settings, Workers: s.Workers, SHA256: s.SHA256, Timeout: s.Timeout.D(), Memory: int64(s.Memory),
		Logger: env.Logger, Registerer: env.Registerer,
		// Named by position, as every stateful step's namespace is: the
		// plugin's path may move without its state being lost.
		State: s.State, Namespace: fmt.Sprintf("plugin@transforms[%d]", env.Step),
	})
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", s.Plugin, err)
	}
	return t, nil
}

// stepName is a step's state namespace and the name its rejections carry:
// its kind and place, stable as long as the pipeline file keeps the step
// where it is.
func stepName(kind string, env *Env) string { return fmt.Sprintf("%s@transforms[%d]", kind, env.Step) }

func buildAggregate(ctx context.Context, s *aggregate.Step, env *Env) (engine.Transform, error) {
	a, err := aggregate.New(s.Aggregate, aggregate.Options{Name: stepName("aggregate", env)})
	if err != nil {
		return nil, err
	}
	return a.Transform(), nil
}

func buildDedupe(ctx context.Context, s *dedupe.Step, env *Env) (engine.Transform, error) {
	d, err := dedupe.New(s.Dedupe, dedupe.Options{Name: stepName("dedupe", env)})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// buildRepartition builds the step that ends the stage before a
// repartition: it re-keys the records, which the stage's sink (the
// internal topic's) then partitions by key. Build cuts the pipeline there.
func buildRepartition(ctx context.Context, c *repartition.Config, env *Env) (engine.Transform, error) {
	return repartition.NewRekey(*c), nil
}
