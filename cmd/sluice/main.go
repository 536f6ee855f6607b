// Command sluice is the one Sluice binary: pipelines, the built-in broker,
// the daemon and the Kafka console tools. This package is wiring only.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/logging"
	"github.com/sluicehq/sluice/plugins/builtin"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// A built-in plugin process is this binary re-executed by the host.
	builtin.MaybeServe()
	os.Exit(run())
}

// run is main without os.Exit, so deferred work (profiles) finishes.
func run() int {
	stopProfiles, err := startProfiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		return 1
	}
	defer stopProfiles()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		var ec exitCode
		if asExitCode(err, &ec) {
			return int(ec)
		}
		fmt.Fprintln(os.Stderr, "sluice:", withHint(err))
		return 1
	}
	return 0
}

func newRootCmd() *cobra.Command {
	var logFormat, logLevel string
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Exactly-once stream processing from Kafka through plugins into sinks",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return err
			}
			slog.SetDefault(logger)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(
		newVersionCmd(),
		newRunCmd(),
		newDaemonCmd(),
		newLintCmd(),
		newPluginCmd(),
		newBrokerCmd(), newTopicCmd(), newProduceCmd(), newConsumeCmd(), newGroupCmd(), newStateCmd(), newUserCmd(), newACLCmd(), newClusterCmd(), newQuotaCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "sluice", version)
		},
	}
}

// exitCode is an error that carries only a process exit status: the command
// has already said what went wrong (lint prints each problem itself).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func asExitCode(err error, target *exitCode) bool {
	ec, ok := err.(exitCode)
	if ok {
		*target = ec
	}
	return ok
}
