package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// The console tools that change what already exists: kafka-topics.sh
// --alter and kafka-configs.sh (topic alter), kafka-delete-records.sh
// (topic delete-records) and kafka-consumer-groups.sh --delete-offsets
// (group delete-offsets). kadm does the requests, so they work against any
// Kafka as well as the built-in broker.

// withMessage joins a kadm error with the broker's message, which on the
// built-in broker says what to change.
func withMessage(err error, msg string) error {
	if msg == "" || strings.Contains(err.Error(), msg) {
		return err
	}
	return &brokerMessage{err, msg}
}

// brokerMessage shows a Kafka error by its name and the broker's message,
// leaving out the code's generic description.
type brokerMessage struct {
	err error
	msg string
}

func (e *brokerMessage) Error() string {
	var ke *kerr.Error
	if errors.As(e.err, &ke) {
		return ke.Message + ": " + e.msg
	}
	return e.err.Error() + ": " + e.msg
}

func (e *brokerMessage) Unwrap() error { return e.err }

// aclHint adds what to grant to an authorization failure.
func aclHint(err error, need string) error {
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) {
		return fmt.Errorf("%w; the principal needs %s (sluice acl create)", err, need)
	}
	return err
}

func newTopicAlterCmd(conn *kafkaFlags) *cobra.Command {
	var partitions int
	var set, unset []string
	cmd := &cobra.Command{
		Use:   "alter NAME",
		Short: "Add partitions to a topic or change its configs",
		Long: `Add partitions to a topic (--partitions, the new total: a topic never
shrinks) or set and reset its configs (--config KEY=VALUE, --delete-config
KEY, both repeatable; a reset config takes its default again). Config
changes take effect at once, without a restart.`,
		Example: `  sluice topic alter orders --partitions 6
  sluice topic alter orders --config retention.ms=3600000 --delete-config segment.ms`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if partitions == 0 && len(set) == 0 && len(unset) == 0 {
				return errors.New("nothing to alter: give --partitions N, --config KEY=VALUE or --delete-config KEY")
			}
			var ops []kadm.AlterConfig
			for _, kv := range set {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--config %q: use KEY=VALUE", kv)
				}
				ops = append(ops, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
			}
			for _, k := range unset {
				ops = append(ops, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			var changed []string
			if partitions != 0 {
				if partitions < 0 {
					return fmt.Errorf("--partitions %d: give the new partition count, more than the topic has", partitions)
				}
				resps, err := adm.UpdatePartitions(ctx, partitions, name)
				if err != nil {
					return fmt.Errorf("alter topic %s: %w", name, conn.explain(err))
				}
				if r := resps[name]; r.Err != nil {
					return fmt.Errorf("alter topic %s: %w", name, aclHint(withMessage(r.Err, r.ErrMessage), "ALTER on the topic"))
				}
				changed = append(changed, fmt.Sprintf("partitions now %d", partitions))
			}
			if len(ops) > 0 {
				resps, err := adm.AlterTopicConfigs(ctx, ops, name)
				if err == nil {
					for _, r := range resps {
						if r.Err != nil {
							err = aclHint(withMessage(r.Err, r.ErrMessage), "ALTER_CONFIGS on the topic")
						}
					}
				}
				if err != nil {
					if len(changed) > 0 {
						return fmt.Errorf("topic %s: %s, but its configs were not changed: %w", name, changed[0], err)
					}
					return fmt.Errorf("alter topic %s: %w", name, err)
				}
				for _, kv := range set {
					changed = append(changed, "set "+kv)
				}
				for _, k := range unset {
					changed = append(changed, k+" reset to its default")
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "altered topic %s: %s\n", name, strings.Join(changed, ", "))
			return nil
		},
	}
	cmd.Flags().IntVar(&partitions, "partitions", 0, "the topic's new partition count (more than it has)")
	cmd.Flags().StringArrayVar(&set, "config", nil, "set topic config KEY=VALUE, repeatable (e.g. retention.ms=3600000)")
	cmd.Flags().StringArrayVar(&unset, "delete-config", nil, "reset topic config KEY to its default, repeatable")
	return cmd
}

func newTopicDeleteRecordsCmd(conn *kafkaFlags) *cobra.Command {
	var partition int32
	var before string
	cmd := &cobra.Command{
		Use:   "delete-records NAME --partition P --before OFFSET",
		Short: "Delete a partition's records before an offset",
		Long: `Delete the records of one partition before OFFSET (or all of them with
--before end) by moving its log start there, as kafka-delete-records.sh
does. Consumers at older offsets then get OFFSET_OUT_OF_RANGE and reset;
committed offsets are left as they are. Cannot be undone.`,
		Example: `  sluice topic delete-records orders --partition 0 --before 1000
  sluice topic delete-records orders --partition 0 --before end`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if partition < 0 {
				return errors.New("give --partition P: the partition whose records to delete")
			}
			var at int64
			switch before {
			case "":
				return errors.New("give --before OFFSET (or --before end): records before it are deleted")
			case "end":
				at = -1
			default:
				n, err := strconv.ParseInt(before, 10, 64)
				if err != nil || n < 0 {
					return fmt.Errorf("--before %q: give an offset (0 or more) or end", before)
				}
				at = n
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			old := int64(-1)
			if starts, err := adm.ListStartOffsets(ctx, name); err == nil {
				if o, ok := starts.Lookup(name, partition); ok && o.Err == nil {
					old = o.Offset
				}
			}
			var os kadm.Offsets
			os.Add(kadm.Offset{Topic: name, Partition: partition, At: at, LeaderEpoch: -1})
			resps, err := adm.DeleteRecords(ctx, os)
			if err != nil {
				if errors.Is(err, kerr.UnknownTopicOrPartition) {
					return fmt.Errorf("topic %s has no partition %d; sluice topic describe %s lists its partitions", name, partition, name)
				}
				return fmt.Errorf("delete records of %s partition %d: %w", name, partition, conn.explain(err))
			}
			r, ok := resps.Lookup(name, partition)
			switch {
			case !ok:
				return fmt.Errorf("delete records of %s partition %d: no answer for the partition", name, partition)
			case errors.Is(r.Err, kerr.OffsetOutOfRange):
				end := "its high watermark"
				if ends, err := adm.ListEndOffsets(ctx, name); err == nil {
					if o, ok := ends.Lookup(name, partition); ok && o.Err == nil {
						end = strconv.FormatInt(o.Offset, 10)
					}
				}
				return fmt.Errorf("offset %s is past the end of %s partition %d: give at most %s, or --before end", before, name, partition, end)
			case r.Err != nil:
				return fmt.Errorf("delete records of %s partition %d: %w", name, partition, aclHint(r.Err, "DELETE on the topic"))
			}
			was := ""
			if old >= 0 {
				was = fmt.Sprintf(" (was %d)", old)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted records of %s partition %d before offset %d: log start now %d%s\n", name, partition, r.LowWatermark, r.LowWatermark, was)
			return nil
		},
	}
	cmd.Flags().Int32Var(&partition, "partition", -1, "the partition whose records to delete")
	cmd.Flags().StringVar(&before, "before", "", "delete records before this offset; end deletes all")
	return cmd
}

func newGroupDeleteOffsetsCmd(conn *kafkaFlags) *cobra.Command {
	var topic string
	var partitions []int32
	cmd := &cobra.Command{
		Use:   "delete-offsets GROUP --topic T [--partition P]",
		Short: "Delete a group's committed offsets of a topic",
		Long: `Delete a consumer group's committed offsets of a topic (all its partitions,
or those given with --partition), as kafka-consumer-groups.sh
--delete-offsets does. A group whose running members subscribe to the
topic keeps them (GROUP_SUBSCRIBED_TO_TOPIC): stop its consumers first. A
consumer of the group that starts afterwards begins where its reset policy
says.`,
		Example: `  sluice group delete-offsets readers --topic orders
  sluice group delete-offsets readers --topic orders --partition 0 --partition 3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			grp := args[0]
			if topic == "" {
				return errors.New("give --topic T: the topic whose committed offsets to delete")
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			ps := partitions
			if len(ps) == 0 {
				md, err := adm.Metadata(ctx, topic)
				if err != nil {
					return fmt.Errorf("delete offsets: %w", conn.explain(err))
				}
				td, ok := md.Topics[topic]
				if !ok || td.Err != nil {
					return fmt.Errorf("topic %s does not exist; sluice topic list shows the topics, or give --partition", topic)
				}
				ps = td.Partitions.Numbers()
			}
			set := kadm.TopicsSet{}
			set.Add(topic, ps...)
			resps, err := adm.DeleteOffsets(ctx, grp, set)
			switch {
			case errors.Is(err, kerr.GroupIDNotFound):
				return fmt.Errorf("group %s does not exist; sluice group list shows the groups", grp)
			case errors.Is(err, kerr.NonEmptyGroup):
				return fmt.Errorf("group %s has members that are not Kafka consumers; stop them (sluice group describe %s names them), then delete", grp, grp)
			case err != nil:
				return fmt.Errorf("delete offsets of group %s: %w", grp, aclHint(conn.explain(err), "DELETE on the group and READ on the topic"))
			}
			var deleted []string
			var errs []error
			slices.Sort(ps)
			for _, p := range ps {
				e, ok := resps.Lookup(topic, p)
				switch {
				case !ok:
					errs = append(errs, fmt.Errorf("partition %d: no answer", p))
				case errors.Is(e, kerr.GroupSubscribedToTopic):
					errs = append(errs, fmt.Errorf("group %s is consuming %s: stop its consumers (sluice group describe %s names them), then delete", grp, topic, grp))
				case errors.Is(e, kerr.UnknownTopicOrPartition):
					errs = append(errs, fmt.Errorf("topic %s has no partition %d; sluice topic describe %s lists its partitions", topic, p, topic))
				case e != nil:
					errs = append(errs, fmt.Errorf("partition %d: %w", p, aclHint(e, "READ on the topic")))
				default:
					deleted = append(deleted, strconv.Itoa(int(p)))
				}
			}
			if len(deleted) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted committed offsets of group %s for %s partitions %s\n", grp, topic, strings.Join(deleted, ","))
			}
			if len(errs) > 0 {
				// Every partition usually fails for one reason: say each
				// reason once, on one line.
				var msgs []string
				for _, e := range errs {
					if !slices.Contains(msgs, e.Error()) {
						msgs = append(msgs, e.Error())
					}
				}
				return errors.New(strings.Join(msgs, "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "the topic whose committed offsets to delete")
	cmd.Flags().Int32SliceVar(&partitions, "partition", nil, "only these partitions, repeatable (default: all of the topic)")
	return cmd
}
