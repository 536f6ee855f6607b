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
			// TYPE is the group protocol, classic or consumer (KIP-848);
			// brokers before Kafka 4 do not say.
			fmt.Fprintln(w, "GROUP\tSTATE\tPROTOCOL-TYPE\tTYPE")
			for _, g := range groups.Sorted() {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType, orDash(g.GroupType))
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
				// DescribeGroups answers a consumer-protocol (KIP-848)
				// group Dead, as Kafka does; ConsumerGroupDescribe
				// describes it.
				if ok, err := describeConsumerGroup(cmd, adm, args[0]); ok || err != nil {
					return err
				}
				return fmt.Errorf("group %s does not exist; sluice group list shows the groups there are", args[0])
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "group %s  state %s  protocol classic  type %s  assignor %s  members %d\n\n",
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

// describeConsumerGroup prints a consumer-protocol (KIP-848) group: its
// epochs and server-side assignor, each member's epoch, assignment and
// target (while reconciling they differ), and its committed offsets and
// lag. ok is false when the group is not a consumer-protocol group (or the
// broker does not speak ConsumerGroupDescribe).
func describeConsumerGroup(cmd *cobra.Command, adm *kadm.Client, group string) (ok bool, err error) {
	ctx := cmd.Context()
	ds, err := adm.DescribeConsumerGroups(ctx, group)
	if err != nil {
		var ae *kadm.AuthError
		if errors.As(err, &ae) {
			return false, fmt.Errorf("describe group %s: %w", group, err)
		}
		return false, nil
	}
	d, found := ds[group]
	if !found || d.Err != nil {
		return false, nil
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "group %s  state %s  protocol consumer (KIP-848)  assignor %s  group epoch %d  assignment epoch %d  members %d\n\n",
		d.Group, d.State, orDash(d.AssignorName), d.Epoch, d.AssignmentEpoch, len(d.Members))
	owner := map[string]map[int32]string{}
	if len(d.Members) > 0 {
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "MEMBER\tEPOCH\tCLIENT\tHOST\tASSIGNED\tTARGET")
		for _, m := range d.Members {
			for t, ps := range m.Assignment {
				if owner[t] == nil {
					owner[t] = map[int32]string{}
				}
				for p := range ps {
					owner[t][p] = m.MemberID
				}
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", m.MemberID, m.MemberEpoch, m.ClientID, m.ClientHost,
				topicsSet(m.Assignment), topicsSet(m.TargetAssignment))
		}
		w.Flush()
		fmt.Fprintln(out)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return true, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	parts := d.AssignedPartitions()
	committed.Each(func(o kadm.OffsetResponse) {
		if parts[o.Topic] == nil {
			parts[o.Topic] = map[int32]struct{}{}
		}
		parts[o.Topic][o.Partition] = struct{}{}
	})
	var ends kadm.ListedOffsets
	if topics := parts.Topics(); len(topics) > 0 {
		if ends, err = adm.ListEndOffsets(ctx, topics...); err != nil {
			return true, fmt.Errorf("end offsets of %s's topics: %w", group, err)
		}
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER")
	var total int64
	for _, tp := range parts.Sorted() {
		for _, p := range tp.Partitions {
			end := int64(-1)
			if e, ok := ends.Lookup(tp.Topic, p); ok && e.Err == nil {
				end = e.Offset
			}
			c, lag := "-", "-"
			if o, ok := committed.Lookup(tp.Topic, p); ok && o.Err == nil && o.At >= 0 {
				c = fmt.Sprint(o.At)
				if end >= 0 {
					n := max(end-o.At, 0)
					lag, total = fmt.Sprint(n), total+n
				}
			} else if end >= 0 {
				// Nothing committed: all of the partition is lag, as
				// kafka-consumer-groups counts it.
				lag, total = fmt.Sprint(end), total+end
			}
			member := orDash(owner[tp.Topic][p])
			fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\t%s\n", tp.Topic, p, c, end, lag, member)
		}
	}
	fmt.Fprintf(w, "\t\t\t\t%d\ttotal lag\n", total)
	return true, w.Flush()
}

// topicsSet renders partitions as topic:partitions.
func topicsSet(s kadm.TopicsSet) string {
	var parts []string
	for _, tp := range s.Sorted() {
		strs := make([]string, len(tp.Partitions))
		for i, p := range tp.Partitions {
			strs[i] = fmt.Sprint(p)
		}
		parts = append(parts, tp.Topic+":"+strings.Join(strs, ","))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
