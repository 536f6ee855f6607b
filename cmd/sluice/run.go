package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/wire"
	"github.com/sluicehq/sluice/pipelines"
)

func newRunCmd() *cobra.Command {
	var (
		dataDir  string
		idleExit time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run one pipeline in the foreground",
		Long: `Run one pipeline in the foreground until Ctrl-C or SIGTERM.

On a stop signal intake stops at once and the batch in flight is committed
or abandoned; nothing committed is lost and nothing half-written becomes
visible. Run it again and it resumes where the sink says it stopped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if idleExit < 0 {
				return fmt.Errorf("--idle-exit %v: use a positive duration such as 5s, or 0 to run until stopped", idleExit)
			}
			spec, err := pipelines.Load(args[0])
			if err != nil {
				return err
			}
			p, err := wire.Build(cmd.Context(), spec, wire.Options{
				DataDir:  dataDir,
				IdleExit: idleExit,
				Logger:   slog.Default(),
				Metrics:  engine.NewMetrics(prometheus.NewRegistry()),
				Stdout:   cmd.OutOrStdout(),
			})
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			err = p.Run(cmd.Context())
			epoch, at := p.Committed()
			slog.Info("stopped", "pipeline", spec.Name, "epoch", epoch, "positions", at.String())
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "./data", "directory for local state (checkpoints, write-ahead logs, the built-in broker)")
	cmd.Flags().DurationVar(&idleExit, "idle-exit", 0, "exit 0 once the source has had no new records for this long and everything read is committed (0 = run until stopped)")
	return cmd
}
