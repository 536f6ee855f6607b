package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newTopicCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe, alter and delete Kafka topics, and delete records",
	}
	conn := addKafkaFlags(cmd)

	var partitions int32
	var rf int16
	var configs []string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := conn.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			req := kmsg.NewPtrCreateTopicsRequest()
			req.TimeoutMillis = 30000
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = args[0], partitions, rf
			for _, kv := range configs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--config %q: use KEY=VALUE", kv)
				}
				c := kmsg.NewCreateTopicsRequestTopicConfig()
				c.Name, c.Value = k, kmsg.StringPtr(v)
				rt.Configs = append(rt.Configs, c)
			}
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(cmd.Context(), cl)
			if err != nil {
				return fmt.Errorf("create topic %s: %w", args[0], err)
			}
			for _, t := range resp.Topics {
				if err := kafkaErr(t.ErrorCode, t.ErrorMessage); err != nil {
					return fmt.Errorf("create topic %s: %w", t.Topic, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created topic %s\n", args[0])
			return nil
		},
	}
	create.Flags().Int32Var(&partitions, "partitions", 1, "number of partitions")
	create.Flags().Int16Var(&rf, "replication-factor", 1, "replicas per partition (the built-in broker has one node: 1)")
	create.Flags().StringArrayVar(&configs, "config", nil, "topic config KEY=VALUE, repeatable (e.g. retention.ms=3600000)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := conn.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			md, err := topicMetadata(cmd.Context(), cl)
			if err != nil {
				return fmt.Errorf("list topics: %w", err)
			}
			var names []string
			for _, t := range md.Topics {
				if t.Topic != nil && !t.IsInternal {
					names = append(names, *t.Topic)
				}
			}
			slices.Sort(names)
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		},
	}

	describe := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a topic's partitions, leaders and offsets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := conn.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx := cmd.Context()
			md, err := topicMetadata(ctx, cl, args[0])
			if err != nil {
				return fmt.Errorf("describe topic: %w", err)
			}
			if len(md.Topics) != 1 {
				return fmt.Errorf("describe topic %s: broker returned %d topics", args[0], len(md.Topics))
			}
			mt := md.Topics[0]
			if err := kafkaErr(mt.ErrorCode, nil); err != nil {
				return fmt.Errorf("topic %s: %w", args[0], err)
			}
			offsets := map[int64]map[int32]int64{}
			for _, ts := range []int64{-2, -1} {
				req := kmsg.NewPtrListOffsetsRequest()
				rt := kmsg.NewListOffsetsRequestTopic()
				rt.Topic = args[0]
				for _, p := range mt.Partitions {
					rp := kmsg.NewListOffsetsRequestTopicPartition()
					rp.Partition, rp.Timestamp = p.Partition, ts
					rt.Partitions = append(rt.Partitions, rp)
				}
				req.Topics = append(req.Topics, rt)
				resp, err := req.RequestWith(ctx, cl)
				if err != nil {
					return fmt.Errorf("list offsets: %w", err)
				}
				offsets[ts] = map[int32]int64{}
				for _, t := range resp.Topics {
					for _, p := range t.Partitions {
						if err := kafkaErr(p.ErrorCode, nil); err != nil {
							return fmt.Errorf("offsets of partition %d: %w", p.Partition, err)
						}
						offsets[ts][p.Partition] = p.Offset
					}
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "topic %s: %d partitions\n", args[0], len(mt.Partitions))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tEARLIEST\tLATEST")
			slices.SortFunc(mt.Partitions, func(a, b kmsg.MetadataResponseTopicPartition) int { return int(a.Partition - b.Partition) })
			for _, p := range mt.Partitions {
				fmt.Fprintf(tw, "%d\t%d\t%v\t%d\t%d\n", p.Partition, p.Leader, p.Replicas, offsets[-2][p.Partition], offsets[-1][p.Partition])
			}
			return tw.Flush()
		},
	}

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic and its data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := conn.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			req := kmsg.NewPtrDeleteTopicsRequest()
			req.TimeoutMillis = 30000
			req.TopicNames = []string{args[0]}
			rt := kmsg.NewDeleteTopicsRequestTopic()
			rt.Topic = kmsg.StringPtr(args[0])
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(cmd.Context(), cl)
			if err != nil {
				return fmt.Errorf("delete topic %s: %w", args[0], err)
			}
			if len(resp.Topics) == 0 {
				return errors.New("delete topic: empty response from broker")
			}
			for _, t := range resp.Topics {
				if err := kafkaErr(t.ErrorCode, t.ErrorMessage); err != nil {
					return fmt.Errorf("delete topic %s: %w", args[0], err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted topic %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, describe, del, newTopicAlterCmd(conn), newTopicDeleteRecordsCmd(conn))
	return cmd
}
