package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// defaultBootstrap is where the console tools look for Kafka unless told.
const defaultBootstrap = "127.0.0.1:9092"

// addBootstrapFlag adds --bootstrap, defaulting to $SLUICE_BOOTSTRAP.
func addBootstrapFlag(cmd *cobra.Command, dst *string) {
	def := os.Getenv("SLUICE_BOOTSTRAP")
	if def == "" {
		def = defaultBootstrap
	}
	cmd.PersistentFlags().StringVar(dst, "bootstrap", def, "Kafka bootstrap address(es), comma-separated (env SLUICE_BOOTSTRAP)")
}

func newKafkaClient(bootstrap string, opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitComma(bootstrap)...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", bootstrap, err)
	}
	return cl, nil
}

// splitComma splits a comma-separated list, dropping empty items.
func splitComma(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
}

// kafkaErr turns a response error code and message into an error, nil for 0.
func kafkaErr(code int16, msg *string) error {
	if code == 0 {
		return nil
	}
	name := fmt.Sprintf("error code %d", code)
	if e := kerr.TypedErrorForCode(code); e != nil {
		name = e.Message
	}
	if msg != nil && *msg != "" {
		return fmt.Errorf("%s: %s", name, *msg)
	}
	return kerr.ErrorForCode(code)
}

// topicMetadata fetches metadata for the topics named (all when none).
func topicMetadata(ctx context.Context, cl *kgo.Client, topics ...string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	return req.RequestWith(ctx, cl)
}
