package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/pipelines"
)

func newLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check pipeline files and print every problem as FILE:LINE:COL: message",
		Long: "Lint loads each pipeline file the way run and daemon do (environment\n" +
			"interpolation, defaults, validation) and prints every problem of every\n" +
			"file, one per line. It exits 1 if any file is invalid.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			out := cmd.OutOrStdout()
			invalid := 0
			for _, file := range files {
				_, err := components.Builtin.Load(file)
				if err == nil {
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
}
