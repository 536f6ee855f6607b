package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// newGroupCmd is `sluice group list|describe|delete`, in the spirit of
// kafka-consumer-groups.sh. It works against any Kafka (kadm, franz-go's
// admin client, does the requests and the lag arithmetic).
func newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "List, describe and delete consumer groups, and delete their committed offsets",
	}
	conn := addKafkaFlags(cmd)

	list := &cobra.Command{
		Use:   "list",
		Short: "List consumer groups with their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			groups, err := adm.ListGroups(cmd.Context())
			if err != nil {
				return fmt.Errorf("list groups: %w", err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "GROUP\tSTATE\tPROTOCOL-TYPE")
			for _, g := range groups.Sorted() {
				fmt.Fprintf(w, "%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType)
			}
			return w.Flush()
		},
	}

	describe := &cobra.Command{
		Use:   "describe GROUP",
		Short: "Show a group's state, members, assignments, committed offsets and lag",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			lags, err := adm.Lag(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("describe group %s: %w", args[0], err)
			}
			l, ok := lags[args[0]]
			switch {
			case !ok:
				return fmt.Errorf("group %s: not found", args[0])
			case l.DescribeErr != nil:
				return fmt.Errorf("describe group %s: %w", args[0], l.DescribeErr)
			case l.FetchErr != nil:
				return fmt.Errorf("committed offsets of %s: %w", args[0], l.FetchErr)
			case l.State == "Dead":
				return fmt.Errorf("group %s does not exist; sluice group list shows the groups there are", args[0])
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "group %s  state %s  protocol %s/%s  members %d\n\n",
				l.Group, l.State, orDash(l.ProtocolType), orDash(l.Protocol), len(l.Members))
			if len(l.Members) > 0 {
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "MEMBER\tCLIENT\tHOST\tASSIGNED")
				for _, m := range l.Members {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.MemberID, m.ClientID, m.ClientHost, assigned(m))
				}
				w.Flush()
				fmt.Fprintln(out)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER")
			for _, p := range l.Lag.Sorted() {
				committed, lag := "-", "-"
				if p.Commit.At >= 0 {
					committed = fmt.Sprint(p.Commit.At)
				}
				if p.Lag >= 0 {
					lag = fmt.Sprint(p.Lag)
				}
				member := "-"
				if p.Member != nil {
					member = p.Member.MemberID
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\t%s\n", p.Topic, p.Partition, committed, p.End.Offset, lag, member)
			}
			fmt.Fprintf(w, "\t\t\t\t%d\ttotal lag\n", l.Lag.Total())
			return w.Flush()
		},
	}

	del := &cobra.Command{
		Use:   "delete GROUP...",
		Short: "Delete empty consumer groups and their committed offsets",
		Long: `Delete consumer groups that have no members, with their committed offsets,
as Kafka does: a group with members (a running consumer, or a pipeline in
receiver mode or split into tasks) is refused with NON_EMPTY_GROUP, and a
group that does not exist with GROUP_ID_NOT_FOUND.

A pipeline resumes from its sink, never from these offsets: for a pipeline
they are an echo for lag tools. A direct-mode pipeline that is not split into
tasks reads without joining its group, so its group has no members while it
runs; deleting it loses nothing, and its next commit writes the offsets again.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resps, err := adm.DeleteGroups(cmd.Context(), args...)
			if err != nil {
				return fmt.Errorf("delete groups: %w", err)
			}
			var errs []error
			for _, g := range args {
				r, ok := resps[g]
				switch {
				case !ok:
					errs = append(errs, fmt.Errorf("group %s: no answer", g))
				case errors.Is(r.Err, kerr.GroupIDNotFound):
					errs = append(errs, fmt.Errorf("group %s does not exist; sluice group list shows the groups", g))
				case errors.Is(r.Err, kerr.NonEmptyGroup):
					errs = append(errs, fmt.Errorf("group %s has members (a running pipeline or consumer; sluice group describe %s names them); stop them, then delete", g, g))
				case r.Err != nil:
					errs = append(errs, fmt.Errorf("group %s: %w", g, r.Err))
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "deleted group %s\n", g)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.AddCommand(list, describe, del, newGroupDeleteOffsetsCmd(conn))
	return cmd
}

// assigned renders a member's assignment as topic:partitions.
func assigned(m kadm.DescribedGroupMember) string {
	a, ok := m.Assigned.AsConsumer()
	if !ok || len(a.Topics) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range a.Topics {
		ps := append([]int32(nil), t.Partitions...)
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		strs := make([]string, len(ps))
		for i, p := range ps {
			strs[i] = fmt.Sprint(p)
		}
		parts = append(parts, t.Topic+":"+strings.Join(strs, ","))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
