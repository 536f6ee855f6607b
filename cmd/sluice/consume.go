package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

func newConsumeCmd() *cobra.Command {
	var (
		bootstrap, topic        string
		fromBeginning, printKey bool
		maxMessages             int
		partition               int32
		offset                  int64
	)
	cmd := &cobra.Command{
		Use:   "consume --topic T",
		Short: "Print records of a topic, one value per line",
		Long: `Print the records of a topic, one value per line (key, a tab, then the value with
--print-key). Reads every partition from the end (or the beginning with
--from-beginning), or one partition from an offset with --partition and --offset.
Stops after --max-messages records, or on Ctrl-C.`,
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
			switch {
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
			cl, err := newKafkaClient(bootstrap, opts...)
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
			for maxMessages <= 0 || n < maxMessages {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					return nil // interrupted: a normal way to stop
				}
				var ferr error
				fs.EachError(func(t string, p int32, err error) {
					if ferr == nil {
						ferr = fmt.Errorf("fetch %s partition %d: %w", t, p, err)
					}
				})
				if ferr != nil {
					return ferr
				}
				fs.EachRecord(func(r *kgo.Record) {
					if maxMessages > 0 && n >= maxMessages {
						return
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
			}
			return nil
		},
	}
	addBootstrapFlag(cmd, &bootstrap)
	f := cmd.Flags()
	f.StringVar(&topic, "topic", "", "topic to read (required)")
	f.BoolVar(&fromBeginning, "from-beginning", false, "start at the earliest offset instead of the end")
	f.IntVar(&maxMessages, "max-messages", 0, "exit after this many records (0: run until interrupted)")
	f.Int32Var(&partition, "partition", 0, "read only this partition")
	f.Int64Var(&offset, "offset", 0, "start offset within --partition")
	f.BoolVar(&printKey, "print-key", false, "print the key and a tab before each value")
	return cmd
}
