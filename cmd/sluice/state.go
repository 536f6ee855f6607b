package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/state"
)

// newStateCmd is `sluice state inspect|delete`: the keyed state of a
// pipeline's stateful steps (docs/ARCHITECTURE.md §18).
func newStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Print or delete the keyed state of a pipeline's stateful steps",
	}
	conn := addKafkaFlags(cmd)
	var dataDir string
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./data", "the data directory the pipeline runs with (its state is in DATA/state/PIPELINE)")

	// kafka returns the client options of --bootstrap when it was given.
	kafka := func(cmd *cobra.Command) ([]kgo.Opt, error) {
		if !cmd.Flags().Changed("bootstrap") {
			return nil, nil
		}
		cl, err := conn.client(cmd.Context()) // checks the connection, explaining a failure
		if err != nil {
			return nil, err
		}
		cl.Close()
		t, s, err := conn.settings()
		if err != nil {
			return nil, err
		}
		return kafkaconn.KgoOptions(splitComma(conn.bootstrap), t, s, "sluice", nil)
	}

	var task int32
	var epoch uint64
	inspect := &cobra.Command{
		Use:   "inspect PIPELINE --task N",
		Short: "Print a task's state: namespace, key and value of each entry",
		Long: `Print a task's state: namespace (the step), key and value of each entry, from the local
store in --data (the pipeline must not be running there), or, with --bootstrap, from the
pipeline's changelog topic (_sluice-state.PIPELINE): what a process taking the task over would
restore. Values that are not printable text are quoted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if task < 0 {
				return fmt.Errorf("--task %d: a task is a partition number, 0 or more", task)
			}
			opts := state.InspectOptions{DataDir: dataDir, Pipeline: args[0], Task: engine.Task(task), Epoch: epoch}
			var err error
			if opts.Kafka, err = kafka(cmd); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAMESPACE\tKEY\tVALUE")
			n := 0
			at, err := state.Inspect(cmd.Context(), opts, func(ns string, key, value []byte) error {
				n++
				_, err := fmt.Fprintf(w, "%s\t%s\t%s\n", ns, printable(key), printable(value))
				return err
			})
			if err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "task %d of %s: %d keys at epoch %d\n", task, args[0], n, at)
			return nil
		},
	}
	inspect.Flags().Int32Var(&task, "task", 0, "the task (source partition number) to print")
	inspect.Flags().Uint64Var(&epoch, "epoch", 0, "with --bootstrap: the epoch the sink committed, so changes of a later epoch are left out as a restore would; 0 = every record")
	inspect.MarkFlagRequired("task")

	del := &cobra.Command{
		Use:   "delete PIPELINE",
		Short: "Delete a stopped pipeline's state: its local stores in --data and, with --bootstrap, its changelog topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := kafka(cmd)
			if err != nil {
				return err
			}
			// The steps after a repartition keep their state under the
			// stage's name (PIPELINE.repartition-N).
			stages, err := stateStages(cmd.Context(), dataDir, args[0], k)
			if err != nil {
				return err
			}
			var what []string
			for _, name := range append([]string{args[0]}, stages...) {
				if err := state.Delete(cmd.Context(), dataDir, name, k); err != nil {
					return err
				}
				w := state.Dir(dataDir, name)
				if k != nil {
					w += " and topic " + state.ChangelogTopic(name)
				}
				what = append(what, w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted the state of %s: %s\n", args[0], strings.Join(what, "; "))
			return nil
		},
	}
	cmd.AddCommand(inspect, del)
	return cmd
}

// stateStages names the stages of pipeline that have state: local stores
// under dataDir and, with kafka, changelog topics.
func stateStages(ctx context.Context, dataDir, pipeline string, kafka []kgo.Opt) ([]string, error) {
	prefix := strings.TrimSuffix(pipelines.StageName(pipeline, 1), "1")
	found := map[string]bool{}
	dirs, err := filepath.Glob(state.Dir(dataDir, prefix+"*"))
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		found[filepath.Base(d)] = true
	}
	if kafka != nil {
		cl, err := kgo.NewClient(kafka...)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		topics, err := kadm.NewClient(cl).ListTopics(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the changelog topics of %s's stages: %w", pipeline, err)
		}
		for _, t := range topics.Names() {
			if name, ok := strings.CutPrefix(t, state.ChangelogTopic("")); ok && strings.HasPrefix(name, prefix) {
				found[name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(found)), nil
}

// printable returns b as it is when it is printable text, else quoted.
func printable(b []byte) string {
	if utf8.Valid(b) {
		s := string(b)
		if q := strconv.Quote(s); q[1:len(q)-1] == s {
			return s
		}
	}
	return strconv.Quote(string(b))
}
