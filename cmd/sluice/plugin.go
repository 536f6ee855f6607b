package main

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"

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
	var settings bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the built-in plugins (with --settings, the settings each takes)",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			defer w.Flush()
			for _, n := range builtin.Names() {
				fmt.Fprintln(w, n)
				if !settings {
					continue
				}
				t, _ := builtin.SettingsOf(n)
				list := builtin.SettingsList(t)
				if len(list) == 0 {
					fmt.Fprintln(w, "  (no settings)")
				}
				for _, s := range list {
					var notes []string
					if s.Required {
						notes = append(notes, "required")
					}
					if s.Default != "" {
						notes = append(notes, "default "+s.Default)
					}
					if s.Enum != nil {
						notes = append(notes, "one of "+strings.Join(s.Enum, ", "))
					}
					fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", s.Key, settingType(s.Type), strings.Join(notes, "; "), s.Doc)
				}
			}
		},
	}
	cmd.Flags().BoolVar(&settings, "settings", false, "show each built-in's settings: key, type, required or default, what it does (what lint checks)")
	return cmd
}

// settingType names a settings field's type as a pipeline file writes it.
func settingType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Slice:
		return "list of " + settingType(t.Elem()) + "s"
	}
	return t.String()
}
