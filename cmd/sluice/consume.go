package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func newConsumeCmd() *cobra.Command {
	var (
		topic, group            string
		conn                    *kafkaFlags
		isolation               string
		fromBeginning, printKey bool
		printHeaders            bool
		maxMessages             int
		partition               int32
		offset                  int64
	)
	cmd := &cobra.Command{
		Use:   "consume --topic T",
		Short: "Print records of a topic, one value per line",
		Long: `Print the records of a topic, one value per line (key, a tab, then the value with
--print-key; with --print-headers the headers come first, as
name:value pairs separated by commas, or NO_HEADERS, and a tab, the way
kafka-console-consumer.sh prints them: dead letters carry their reason in the
sluice.reason header). Reads every partition from the end (or the beginning with
--from-beginning), or one partition from an offset with --partition and --offset.
With --group G it joins consumer group G: partitions are shared with the
group's other members, reading resumes at the group's committed offsets
(--from-beginning applies only where none are committed), and the offsets of
what was printed are committed. Stops after --max-messages records, or on Ctrl-C.
Records of transactions are shown once committed (--isolation-level
read_committed, the default here because Sluice's kafka sink writes in
transactions; Kafka's console consumer defaults to read_uncommitted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topic == "" {
				return errors.New("--topic is required")
			}
			f := cmd.Flags()
			start := kgo.NewOffset().AtEnd()
			if fromBeginning {
				start = kgo.NewOffset().AtStart()
			}
			var opts []kgo.Opt
			switch isolation {
			case "read_committed":
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			case "read_uncommitted":
			default:
				return fmt.Errorf("--isolation-level %q: use read_committed or read_uncommitted", isolation)
			}
			switch {
			case group != "" && (f.Changed("partition") || f.Changed("offset")):
				return errors.New("--group shares partitions with the group's members; drop --partition and --offset, or drop --group")
			case group != "":
				opts = append(opts, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
					kgo.ConsumeResetOffset(start), kgo.DisableAutoCommit())
			case f.Changed("offset") && !f.Changed("partition"):
				return errors.New("--offset needs --partition")
			case f.Changed("partition"):
				at := start
				if f.Changed("offset") {
					if offset < 0 {
						return fmt.Errorf("--offset %d: use an offset of 0 or more", offset)
					}
					at = kgo.NewOffset().At(offset)
				}
				opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: at}}))
			default:
				opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start))
			}
			// A batch the broker will not serve (CORRUPT_MESSAGE, retryable
			// to franz-go) would otherwise be retried silently for ever;
			// kept, it is reported below. Other retryable errors are still
			// retried.
			opts = append(opts, kgo.KeepRetryableFetchErrors())
			cl, err := conn.client(cmd.Context(), opts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			// The client would wait for a missing topic or partition to
			// appear; say so instead.
			md, err := topicMetadata(ctx, cl, topic)
			if err != nil {
				return fmt.Errorf("metadata for %s: %w", topic, err)
			}
			if len(md.Topics) != 1 {
				return fmt.Errorf("metadata for %s: broker returned %d topics", topic, len(md.Topics))
			}
			if err := kafkaErr(md.Topics[0].ErrorCode, nil); err != nil {
				return fmt.Errorf("topic %s: %w", topic, err)
			}
			if n := int32(len(md.Topics[0].Partitions)); f.Changed("partition") && (partition < 0 || partition >= n) {
				return fmt.Errorf("--partition %d: topic %s has partitions 0 to %d", partition, topic, n-1)
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			defer w.Flush()
			n := 0
			// next is, per partition, the offset after the last record
			// received: where a refused fetch stands.
			next := map[int32]int64{}
			for maxMessages <= 0 || n < maxMessages {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					return nil // interrupted: a normal way to stop
				}
				var ferr error
				fs.EachError(func(t string, p int32, err error) {
					switch {
					case ferr != nil:
					case errors.Is(err, kerr.CorruptMessage):
						ferr = corruptAt(ctx, cl, t, p, next, consumeStart{group: group, fromBeginning: fromBeginning,
							offset: offset, partition: partition, atOffset: f.Changed("offset")})
					case kerr.IsRetriable(err):
						// franz-go retries it (a leader moving, a partition
						// not yet ready).
					default:
						ferr = fmt.Errorf("fetch %s partition %d: %w", t, p, err)
					}
				})
				if ferr != nil {
					return ferr
				}
				var printed []*kgo.Record
				fs.EachRecord(func(r *kgo.Record) {
					next[r.Partition] = r.Offset + 1
					if maxMessages > 0 && n >= maxMessages {
						return
					}
					printed = append(printed, r)
					if printHeaders {
						writeHeaders(w, r.Headers)
						w.WriteByte('\t')
					}
					if printKey {
						w.Write(r.Key)
						w.WriteByte('\t')
					}
					w.Write(r.Value)
					w.WriteByte('\n')
					n++
				})
				if err := w.Flush(); err != nil {
					return err
				}
				if group != "" && len(printed) > 0 {
					// Commit only what was printed, after it was printed.
					if err := cl.CommitRecords(context.WithoutCancel(ctx), printed...); err != nil {
						return fmt.Errorf("commit offsets of group %s: %w", group, err)
					}
				}
			}
			return nil
		},
	}
	conn = addKafkaFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&topic, "topic", "", "topic to read (required)")
	f.StringVar(&group, "group", "", "consume as a member of this consumer group, committing what is printed")
	f.BoolVar(&fromBeginning, "from-beginning", false, "start at the earliest offset instead of the end")
	f.IntVar(&maxMessages, "max-messages", 0, "exit after this many records (0: run until interrupted)")
	f.Int32Var(&partition, "partition", 0, "read only this partition")
	f.Int64Var(&offset, "offset", 0, "start offset within --partition")
	f.BoolVar(&printKey, "print-key", false, "print the key and a tab before each value")
	f.BoolVar(&printHeaders, "print-headers", false, "print the headers (name:value,name:value, or NO_HEADERS) and a tab first; dead letters' sluice.reason says why they were rejected")
	f.StringVar(&isolation, "isolation-level", "read_committed", "read_committed: only records of committed transactions; read_uncommitted: everything written")
	return cmd
}

// writeHeaders prints headers as kafka-console-consumer.sh does:
// name:value pairs joined by commas, NO_HEADERS when there are none.
func writeHeaders(w *bufio.Writer, hs []kgo.RecordHeader) {
	if len(hs) == 0 {
		w.WriteString("NO_HEADERS")
		return
	}
	for i, h := range hs {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString(h.Key)
		w.WriteByte(':')
		w.Write(h.Value)
	}
}

// consumeStart is where consume began reading, to name the offset of a
// refused batch in a partition it has received nothing from.
type consumeStart struct {
	group         string
	fromBeginning bool
	partition     int32
	offset        int64
	atOffset      bool // --offset given
}

// corruptAt is the error for a partition whose next batch the broker
// refuses as corrupt: one line with the topic, partition and offset, and
// how to read past it.
func corruptAt(ctx context.Context, cl *kgo.Client, topic string, p int32, next map[int32]int64, start consumeStart) error {
	at, ok := next[p]
	if !ok {
		at, ok = startOffset(ctx, cl, topic, p, start)
	}
	where := "after the last record printed"
	skip := "--offset N, N past the refused batch"
	if ok {
		where = fmt.Sprintf("at offset %d", at)
		skip = fmt.Sprintf("--offset %d", at+1)
	}
	return fmt.Errorf("topic %s partition %d: the broker refuses the record batch %s as corrupt (CORRUPT_MESSAGE); to read past it: sluice consume --topic %s --partition %d %s (higher if the batch holds more records), or restore the partition's segment on the broker",
		topic, p, where, topic, p, skip)
}

// startOffset asks the broker where consume began in partition p, having
// received nothing from it: the group's committed offset, or the log's
// start with --from-beginning. Reading from the end, the start has moved
// since; it reports false.
func startOffset(ctx context.Context, cl *kgo.Client, topic string, p int32, start consumeStart) (int64, bool) {
	if start.atOffset && p == start.partition {
		return start.offset, true
	}
	adm := kadm.NewClient(cl)
	if start.group != "" {
		if committed, err := adm.FetchOffsets(ctx, start.group); err == nil {
			if o, ok := committed.Lookup(topic, p); ok && o.Err == nil && o.At >= 0 {
				return o.At, true
			}
		}
	}
	if !start.fromBeginning {
		return 0, false
	}
	los, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, false
	}
	o, ok := los.Lookup(topic, p)
	if !ok || o.Err != nil {
		return 0, false
	}
	return o.Offset, true
}
