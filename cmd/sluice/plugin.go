package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/plugins/scaffold"
)

func newPluginCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Create transform plugins and list the built-in ones",
	}
	cmd.AddCommand(newPluginNewCmd(), newPluginListCmd())
	return cmd
}

func newPluginNewCmd() *cobra.Command {
	var o scaffold.Options
	var noTidy bool
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Scaffold a transform plugin: main.go, a test, a README and go.mod",
		Long: "new writes a plugin project into --dir (default ./NAME). Inside a Sluice\n" +
			"checkout (or with --replace) its go.mod builds against that checkout, and\n" +
			"go mod tidy is run so that `go build` works at once. Outside a checkout give\n" +
			"--replace /path/to/sluice (or --no-tidy to write the files only). A run that\n" +
			"fails leaves nothing behind, so it can simply be run again.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			o.Tidy = !noTidy
			res, err := scaffold.New(o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "created %s: %s\n", res.Dir, strings.Join(res.Files, ", "))
			if res.Replace != "" {
				fmt.Fprintf(out, "builds against the Sluice checkout %s (a replace in go.mod)\n", res.Replace)
			}
			rel := o.Dir
			if rel == "" {
				rel = o.Name
			}
			fmt.Fprintf(out, "next: cd %s && go test ./... && go build -o %s .\n", rel, o.Name)
			fmt.Fprintf(out, "then in a pipeline: plugin: %s (or a path relative to the pipeline file)\n", filepath.Join(res.Dir, o.Name))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory to create (default ./NAME)")
	cmd.Flags().StringVar(&o.Replace, "replace", "", "local Sluice checkout to build against (default: found above --dir or the working directory)")
	cmd.Flags().BoolVar(&noTidy, "no-tidy", false, "do not run go mod tidy")
	return cmd
}

func newPluginListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the built-in plugins",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			for _, n := range builtin.Names() {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
		},
	}
}
