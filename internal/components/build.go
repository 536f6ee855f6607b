// Package wire turns a pipeline spec into a running engine.Pipeline: it
// picks the source, transforms and sink the YAML names and hands them to
// the engine. It holds no logic of its own beyond that choice.
package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/plugins/host"
	"github.com/sluicehq/sluice/sinks"
	"github.com/sluicehq/sluice/sinks/file"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	"github.com/sluicehq/sluice/sinks/postgres"
	"github.com/sluicehq/sluice/sinks/stdout"
	"github.com/sluicehq/sluice/sources/generate"
	"github.com/sluicehq/sluice/sources/kafka"
)

// Builtin is the name that stands for the embedded broker in a brokers list.
const Builtin = "builtin"

// Options are the process-wide settings a pipeline runs with.
type Options struct {
	// DataDir holds the pipeline's local state: checkpoints for the
	// non-exactly-once modes, write-ahead logs, the built-in broker.
	DataDir  string
	IdleExit time.Duration
	Logger   *slog.Logger
	// Registerer receives the engine's, the plugins' and the sources'
	// metrics; Metrics and KafkaMetrics are the shared collectors.
	Registerer   prometheus.Registerer
	Metrics      *engine.Metrics
	KafkaMetrics *kafka.Metrics
	Stdout       io.Writer // for the stdout sink; nil = os.Stdout
	// BuiltinBroker returns the address of the embedded broker, starting it
	// on first use; nil = `brokers: [builtin]` is refused.
	BuiltinBroker func() (string, error)
}

// Build assembles the pipeline spec describes. ctx bounds only the
// building (starting plugin processes, connecting).
func Build(ctx context.Context, spec *pipelines.Spec, opts Options) (_ *engine.Pipeline, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg := engine.Config{
		Name:                   spec.Name,
		Delivery:               engine.Delivery(spec.Delivery),
		Interval:               spec.Batch.Interval.D(),
		MaxRecordsPerPartition: spec.Batch.MaxRecordsPerPartition,
		IdleExit:               opts.IdleExit,
		Logger:                 opts.Logger,
		Metrics:                opts.Metrics,
	}
	var closers []io.Closer
	defer func() {
		if err != nil {
			for _, c := range closers {
				c.Close()
			}
		}
	}()

	if cfg.Source, err = buildSource(spec, opts); err != nil {
		return nil, err
	}
	closers = append(closers, cfg.Source)
	if cfg.Sink, err = buildSink(spec, opts); err != nil {
		return nil, err
	}
	closers = append(closers, cfg.Sink)
	for i := range spec.Transforms {
		t, err := buildTransform(ctx, spec, i, opts)
		if err != nil {
			return nil, err
		}
		closers = append(closers, t)
		cfg.Transforms = append(cfg.Transforms, t)
	}
	if dl := spec.DeadLetter; dl != nil {
		sink, err := deadLetters(spec, dl, cfg.Sink, opts)
		if err != nil {
			return nil, err
		}
		closers[slices.Index(closers, io.Closer(cfg.Sink))] = sink // a forwarder closes the sink it wraps
		cfg.Sink, cfg.DeadLetters = sink, true
	}
	if cfg.Delivery != engine.ExactlyOnce {
		dir := filepath.Join(opts.DataDir, "checkpoints")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("data directory %s: %w; pass --data with a writable directory", opts.DataDir, err)
		}
		cfg.Checkpoints = engine.NewFileCheckpoints(dir, spec.Name)
	}
	return engine.New(cfg)
}

func brokers(list []string, opts Options) ([]string, error) {
	if !slices.Contains(list, Builtin) {
		return list, nil
	}
	if opts.BuiltinBroker == nil {
		return nil, errors.New("brokers: [builtin] needs the embedded broker, which this command does not start; list host:port addresses instead")
	}
	addr, err := opts.BuiltinBroker()
	if err != nil {
		return nil, fmt.Errorf("start the built-in broker: %w", err)
	}
	return []string{addr}, nil
}

func buildSource(spec *pipelines.Spec, opts Options) (engine.Source, error) {
	switch {
	case spec.Source.Generate != nil:
		return generate.New(*spec.Source.Generate)
	case spec.Source.Kafka != nil:
		k := spec.Source.Kafka
		addrs, err := brokers(k.Brokers, opts)
		if err != nil {
			return nil, err
		}
		conn := kafka.Connection{Brokers: addrs, TLS: k.TLS, SASL: k.SASL}
		if k.Mode == "receiver" {
			walDir := ""
			if k.WALEnabled() {
				walDir = filepath.Join(opts.DataDir, "wal", spec.Name)
			}
			return kafka.NewReceiver(kafka.ReceiverConfig{
				Conn: conn, Topics: k.Topics, Pattern: k.Pattern, Start: k.Start, Group: k.Group,
				BlockInterval: k.BlockInterval.D(), MaxRate: k.MaxRate, WALDir: walDir,
				SkipLoss: k.OnDataLoss == "skip", Delivery: engine.Delivery(spec.Delivery), Pipeline: spec.Name,
				Logger: opts.Logger, Metrics: opts.KafkaMetrics,
			})
		}
		return kafka.NewDirect(kafka.DirectConfig{
			Conn: conn, Topics: k.Topics, Pattern: k.Pattern, Start: k.Start, Group: k.Group,
			MaxRate: k.MaxRate, SkipLoss: k.OnDataLoss == "skip", Pipeline: spec.Name,
			Logger: opts.Logger, Metrics: opts.KafkaMetrics,
		})
	}
	return nil, errors.New("the pipeline has no source block")
}

func buildSink(spec *pipelines.Spec, opts Options) (engine.Sink, error) {
	switch {
	case spec.Sink.File != nil:
		return file.New(*spec.Sink.File)
	case spec.Sink.Stdout != nil:
		w := opts.Stdout
		if w == nil {
			w = os.Stdout
		}
		return stdout.New(*spec.Sink.Stdout, w), nil
	case spec.Sink.Postgres != nil:
		return postgres.New(*spec.Sink.Postgres)
	case spec.Sink.Kafka != nil:
		k := spec.Sink.Kafka
		addrs, err := brokers(k.Brokers, opts)
		if err != nil {
			return nil, err
		}
		return kafkasink.New(kafkasink.Config{
			Brokers: addrs, Topic: k.Topic, CheckpointTopic: k.CheckpointTopic,
			TransactionalID: k.TransactionalID, Compression: k.Compression,
			TLS: k.TLS, SASL: k.SASL, Logger: opts.Logger,
		})
	}
	return nil, errors.New("the pipeline has no sink block")
}

func buildTransform(ctx context.Context, spec *pipelines.Spec, i int, opts Options) (engine.Transform, error) {
	t := spec.Transforms[i]
	plugin := t.Plugin
	if strings.ContainsRune(plugin, '/') && !filepath.IsAbs(plugin) && spec.File != "" {
		// A relative plugin path is relative to the pipeline file.
		plugin = filepath.Join(filepath.Dir(spec.File), plugin)
	}
	tr, err := host.New(ctx, host.Config{
		Pipeline: spec.Name, Name: fmt.Sprintf("%s#%d", filepath.Base(t.Plugin), i+1), Plugin: plugin,
		Settings: t.Settings, Workers: t.Workers, SHA256: t.SHA256, Timeout: t.Timeout.D(),
		Logger: opts.Logger, Registerer: opts.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("transforms[%d] (plugin %s): %w", i, t.Plugin, err)
	}
	return tr, nil
}

// deadLetters points the sink's dead letters where the spec says. A topic
// with a sink other than kafka wraps the sink in a forwarder, which is the
// sink the engine then uses.
func deadLetters(spec *pipelines.Spec, dl *pipelines.DeadLetter, sink engine.Sink, opts Options) (engine.Sink, error) {
	if ks, ok := sink.(*kafkasink.Sink); ok {
		if dl.Topic == "" {
			return nil, errors.New("dead-letter: {file} cannot commit in the kafka sink's transaction; write dead-letter: {topic: NAME}")
		}
		ks.SetDeadLetterTopic(dl.Topic)
		return sink, nil
	}
	if dl.Topic != "" {
		outbox, ok := sink.(sinks.Outbox)
		k := spec.Source.Kafka
		if !ok || k == nil {
			return nil, fmt.Errorf("dead-letter topic needs the kafka sink, or a kafka source with the file or postgres sink (this pipeline has sink %s, source %s); write dead-letter: {file: PATH}", spec.SinkKind(), spec.SourceKind())
		}
		addrs, err := brokers(k.Brokers, opts)
		if err != nil {
			return nil, err
		}
		return kafkasink.NewForwarding(outbox, kafkasink.Config{
			Brokers: addrs, Topic: dl.Topic, TLS: k.TLS, SASL: k.SASL, Logger: opts.Logger,
		})
	}
	if fs, ok := sink.(*file.Sink); ok {
		fs.SetDeadLetterDir(dl.File)
		return sink, nil
	}
	if _, ok := sink.(engine.DeadLetterSink); ok {
		opts.Logger.Info("dead letters are kept by the sink, in the same commit as its output", "pipeline", spec.Name,
			"sink", spec.SinkKind(), "unused", "dead-letter.file")
		return sink, nil
	}
	return nil, fmt.Errorf("sink %s cannot take dead letters in the same commit as its output; remove dead-letter or use the file, postgres or kafka sink", spec.SinkKind())
}
