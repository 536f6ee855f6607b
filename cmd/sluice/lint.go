package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/pipelines"
)

func newLintCmd() *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check pipeline files and print every problem as FILE:LINE:COL: message",
		Long: "Lint loads each pipeline file the way run and daemon do (environment\n" +
			"interpolation, defaults, validation, built-in plugins' settings) and prints\n" +
			"every problem of every file, one per line. It exits 1 if any file is\n" +
			"invalid. What may still be fine when the pipeline runs (a plugin\n" +
			"executable not built yet) is a warning; --strict fails on warnings too.\n" +
			"Relative paths in a pipeline file (plugin:, sink.file.path, dead-letter.file)\n" +
			"are relative to the file's folder.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			out := cmd.OutOrStdout()
			invalid := 0
			for _, file := range files {
				spec, err := components.Builtin.Load(file)
				if err == nil {
					for _, w := range spec.Warnings() {
						fmt.Fprintln(out, warningLine(w))
					}
					if strict && len(spec.Warnings()) > 0 {
						invalid++
						continue
					}
					fmt.Fprintf(out, "%s: ok\n", file)
					continue
				}
				invalid++
				var errs pipelines.Errors
				if !errors.As(err, &errs) {
					errs = pipelines.Errors{{File: file, Msg: err.Error()}}
				}
				for _, e := range errs {
					fmt.Fprintln(out, e)
				}
			}
			if invalid > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too (a plugin executable that is not there yet), as a CI check before deploying")
	return cmd
}

// warningLine formats a warning as FILE:LINE:COL: warning: MSG.
func warningLine(w *pipelines.Error) string {
	c := *w
	c.Msg = "warning: " + c.Msg
	return c.Error()
}
