package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// maxLineBytes caps one input line of `sluice produce`, as Kafka's default
// max message size does for a record.
const maxLineBytes = 1 << 20

func newProduceCmd() *cobra.Command {
	var topic, keySep, acks string
	var conn *kafkaFlags
	cmd := &cobra.Command{
		Use:   "produce --topic T",
		Short: "Produce lines from stdin as records",
		Long: `Produce each line of standard input as one record. With --key-separator, the
text before the first separator is the key: keyed lines go to a partition by the
murmur2 hash of the key, as Kafka's own clients place them; keyless lines are
spread over the partitions a batch at a time (Kafka's sticky partitioning).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topic == "" {
				return errors.New("--topic is required")
			}
			var ack kgo.Acks
			switch acks {
			case "0":
				ack = kgo.NoAck()
			case "1":
				ack = kgo.LeaderAck()
			case "all", "-1":
				ack = kgo.AllISRAcks()
			default:
				return fmt.Errorf("--acks %q: use 0, 1 or all", acks)
			}
			cl, err := conn.client(cmd.Context(),
				kgo.RequiredAcks(ack),
				// Idempotence needs acks=all and producer ids, which the
				// console producer does not rely on.
				kgo.DisableIdempotentWrite(),
				kgo.DefaultProduceTopic(topic),
				kgo.ProducerBatchMaxBytes(maxLineBytes+1024),
			)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx := cmd.Context()
			var (
				failed atomic.Int64
				first  sync.Once
				ferr   error
			)
			sc := bufio.NewScanner(cmd.InOrStdin())
			sc.Buffer(make([]byte, 64<<10), maxLineBytes)
			n := 0
			for sc.Scan() {
				line := sc.Text()
				r := &kgo.Record{Value: []byte(line)}
				if keySep != "" {
					if k, v, ok := strings.Cut(line, keySep); ok {
						r.Key, r.Value = []byte(k), []byte(v)
					}
				}
				cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
					if err != nil {
						failed.Add(1)
						first.Do(func() { ferr = err })
					}
				})
				n++
			}
			if err := sc.Err(); err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			if err := cl.Flush(ctx); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
			if f := failed.Load(); f > 0 {
				if errors.Is(ferr, kerr.UnknownTopicOrPartition) {
					return fmt.Errorf("topic %s does not exist: create it with `sluice topic create %s` (or run the broker with --auto-create-topics): %w", topic, topic, ferr)
				}
				return fmt.Errorf("%d of %d records were not produced; first error: %w", f, n, ferr)
			}
			fmt.Fprintf(os.Stderr, "produced %d records to %s\n", n, topic)
			return nil
		},
	}
	conn = addKafkaFlags(cmd)
	cmd.Flags().StringVar(&topic, "topic", "", "topic to produce to (required)")
	cmd.Flags().StringVar(&keySep, "key-separator", "", "split each line into key and value at the first SEP")
	cmd.Flags().StringVar(&acks, "acks", "all", "acknowledgement: 0, 1 or all")
	return cmd
}
