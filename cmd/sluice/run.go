package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/builtinbroker"
	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/sources/kafka"
	"github.com/sluicehq/sluice/state"
)

func newRunCmd() *cobra.Command {
	var (
		dataDir               string
		idleExit, openTimeout time.Duration
		memLimit              memoryLimit
		status                runStatus
		listen                *listenerFlags
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run one pipeline in the foreground",
		Long: `Run one pipeline in the foreground until Ctrl-C or SIGTERM.

On a stop signal intake stops at once and the batch in flight is committed
or abandoned; nothing committed is lost and nothing half-written becomes
visible. Run it again and it resumes where the sink says it stopped.

A pipeline whose brokers are [builtin] starts the embedded broker on the
data directory, listening on --broker-listen so other Kafka clients can
produce to it. It takes the listener, TLS, SASL, ACL and limit flags of
sluice broker, prefixed broker- (--broker-sasl-ssl-listen, --broker-tls-cert,
--broker-max-connections, ...).
The pipeline connects to it as any client: its tls: and sasl: blocks pick
the listener (both: SASL_SSL, tls: only: SSL, sasl: only: SASL_PLAINTEXT,
neither: PLAINTEXT) and its user needs ACLs like any other.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("give one pipeline file, not %d arguments: %s (sluice run --help lists the flags)", len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if idleExit < 0 {
				return fmt.Errorf("--idle-exit %v: use a positive duration such as 5s, or 0 to run until stopped", idleExit)
			}
			if openTimeout < 0 {
				return fmt.Errorf("--open-timeout %v: use a positive duration such as 30s", openTimeout)
			}
			spec, err := components.Builtin.Load(args[0])
			if err != nil {
				return err
			}
			watchCtx, stopWatch := context.WithCancel(cmd.Context())
			defer stopWatch()
			limit, mode := memLimit.apply()
			go watchMemory(watchCtx, limit, mode)
			if err := status.setup(cmd, spec.Sink.Kind == "stdout"); err != nil {
				return err
			}
			defer status.stop(nil)
			bcfg, err := listen.builtin()
			if err != nil {
				return err
			}
			builtin := &builtinBroker{dir: filepath.Join(dataDir, "broker"), cfg: bcfg}
			defer builtin.close()
			reg := prometheus.NewRegistry()
			metrics := engine.NewMetrics(reg)
			opts := components.Options{
				DataDir:       dataDir,
				IdleExit:      idleExit,
				Logger:        slog.Default(),
				Registerer:    reg,
				Metrics:       metrics,
				KafkaMetrics:  kafka.NewMetrics(reg),
				StateMetrics:  state.NewMetrics(reg),
				Stdout:        cmd.OutOrStdout(),
				BuiltinBroker: builtin.start,
			}
			// Wait for the source here, reported once, rather than as a
			// failed batch per retry; only a run that ends by itself
			// (--idle-exit) gives up.
			wait := time.Duration(0)
			if idleExit > 0 {
				wait = openTimeout
			}
			if err := components.AwaitSource(cmd.Context(), spec, opts, wait); err != nil {
				if cmd.Context().Err() != nil {
					return nil // stopped while waiting
				}
				return err
			}
			p, err := components.Build(cmd.Context(), spec, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if err := status.start(spec.Name, args[0], p, reg, metrics); err != nil {
				return err
			}
			err = p.Run(cmd.Context())
			summary := status.stop(err)
			epoch, at := p.Committed()
			slog.Info("stopped", append([]any{"pipeline", spec.Name, "epoch", epoch, "positions", at}, summary...)...)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "./data", "directory for local state (checkpoints, write-ahead logs, the built-in broker)")
	cmd.Flags().DurationVar(&idleExit, "idle-exit", 0, "exit 0 once no batch is in flight, everything read is committed, reads have returned no records for this long (counted from the first empty read) and a source that can count its backlog reports none (0 = run until stopped)")
	cmd.Flags().DurationVar(&openTimeout, "open-timeout", components.DefaultOpenTimeout, "with --idle-exit: exit 1 if the source cannot be opened (brokers unreachable, a topic missing) for this long, naming the setting to check; without --idle-exit run waits for the source until stopped")
	cmd.Flags().Var(&memLimit, "memory-limit", "soft limit on the process's memory: the Go collector runs earlier as the heap nears it. auto: 192MiB, or 1.5 x what the pipeline holds if that is more; GOMEMLIMIT if that is set; 0 = none")
	status.register(cmd.Flags())
	listen = addListenerFlags(cmd.Flags(), "broker-")
	return cmd
}

// builtinBroker starts the embedded broker on first use.
type builtinBroker struct {
	dir string
	cfg builtinbroker.Config

	once sync.Once
	s    *builtinbroker.Server
	err  error
}

func (bb *builtinBroker) start(tls, sasl bool) (string, error) {
	bb.once.Do(func() {
		bb.s, bb.err = builtinbroker.Start(bb.dir, bb.cfg, slog.Default())
	})
	if bb.err != nil {
		return "", bb.err
	}
	return bb.s.Addr(tls, sasl)
}

func (bb *builtinBroker) close() {
	if bb.s != nil {
		if err := bb.s.Close(); err != nil {
			slog.Warn("closing the built-in broker", "err", err)
		}
	}
}
