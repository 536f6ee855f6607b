package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/pipelines"
)

const (
	// checkpointTopicPrefix names a pipeline's checkpoint topic when the
	// spec does not: one topic per pipeline keeps Open's read short.
	checkpointTopicPrefix = "_sluice-checkpoint."
	// transactionalIDPrefix names a pipeline's transactional id when the
	// spec does not.
	transactionalIDPrefix = "sluice."
)

// Config is the sink's settings: the spec's kafka block with the brokers
// resolved (builtin replaced by an address).
type Config struct {
	Brokers []string
	Topic   string
	// CheckpointTopic holds one checkpoint record per committed epoch,
	// keyed by pipeline; default _sluice-checkpoint.<pipeline>.
	CheckpointTopic string
	// TransactionalID fences other instances; default sluice.<pipeline>.
	TransactionalID string
	// Compression is none, gzip, snappy, lz4 or zstd; default none.
	Compression string
	// DeadLetterTopic receives rejected records in the same transaction.
	DeadLetterTopic string
	TLS             *pipelines.TLS
	SASL            *pipelines.SASL
	Logger          *slog.Logger
	// Tasks is the source's task group, for a pipeline split into tasks
	// on the sink's own cluster (OpenTasks, CommitTasks): positions are
	// then the group's offsets, committed in the sink's transactions.
	Tasks TaskGroup
}

func (c Config) check() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka sink: no brokers; list host:port addresses under brokers")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("kafka sink: broker %q: %v; write host:port", b, err)
		}
	}
	if c.Topic == "" {
		return errors.New("kafka sink: topic is empty; write topic: NAME")
	}
	if _, ok := codecs[c.Compression]; !ok {
		return fmt.Errorf("kafka sink: compression %q: use none, gzip, snappy, lz4 or zstd", c.Compression)
	}
	return nil
}

var codecs = map[string]kgo.CompressionCodec{
	"": kgo.NoCompression(), "none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
}

func (c Config) codec() kgo.CompressionCodec { return codecs[c.Compression] }

func (c Config) checkpointTopic(pipeline string) string {
	if c.CheckpointTopic != "" {
		return c.CheckpointTopic
	}
	return checkpointTopicPrefix + pipeline
}

func (c Config) transactionalID(pipeline string) string {
	if c.TransactionalID != "" {
		return c.TransactionalID
	}
	return transactionalIDPrefix + pipeline
}

// clientOptions are the connection options every client of the sink uses.
func (c Config) clientOptions(clientID string) ([]kgo.Opt, error) {
	return kafkaconn.KgoOptions(c.Brokers, c.TLS, c.SASL, clientID, c.Logger)
}

// ensureTopics creates the output, dead-letter and checkpoint topics when
// they are missing. Output topics get the cluster's default partition
// count; the checkpoint topic one partition, kept forever (compacted where
// the cluster can).
func (c Config) ensureTopics(ctx context.Context, cl *kgo.Client, pipeline string, log *slog.Logger) error {
	adm := kadm.NewClient(cl)
	want := []string{c.Topic, c.checkpointTopic(pipeline)}
	if c.DeadLetterTopic != "" {
		want = append(want, c.DeadLetterTopic)
	}
	listed, err := adm.ListTopics(ctx, want...)
	if err != nil {
		return fmt.Errorf("kafka sink: list topics: %w", classify(err))
	}
	for _, topic := range want {
		if d, ok := listed[topic]; ok && d.Err == nil {
			if n := len(d.Partitions); topic == c.checkpointTopic(pipeline) && n != 1 {
				// Open reads partition 0 only, and keyed records would be
				// spread over all of them.
				return fmt.Errorf("kafka sink: checkpoint topic %s has %d partitions and the sink needs exactly one; delete it (it is recreated) or name another with checkpoint-topic", topic, n)
			}
			if topic == c.checkpointTopic(pipeline) {
				compactCheckpointTopic(ctx, adm, topic, log)
			}
			continue
		}
		var configs map[string]*string
		partitions := int32(-1)
		if topic == c.checkpointTopic(pipeline) {
			partitions = 1
			// Small segments, so the cleaner (which never cleans the
			// segment being written) keeps it to a few of them: at a few
			// hundred bytes an epoch, 1 MiB holds thousands of epochs.
			configs = map[string]*string{"cleanup.policy": ptr("compact"), "retention.ms": ptr("-1"), "segment.bytes": ptr(strconv.Itoa(checkpointSegmentBytes))}
		}
		_, err := adm.CreateTopic(ctx, partitions, -1, configs, topic)
		if errors.Is(err, kerr.InvalidConfig) && configs != nil {
			// A broker without compaction (the built-in one before it had
			// it): keep every record.
			_, err = adm.CreateTopic(ctx, partitions, -1, map[string]*string{"retention.ms": ptr("-1")}, topic)
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka sink: create topic %s: %w; create it yourself (sluice topic create %s) or allow this client to", topic, classify(err), topic)
		}
		if err == nil {
			log.Info("kafka sink: created topic", "topic", topic, "pipeline", pipeline)
		}
	}
	return nil
}

// compactCheckpointTopic makes an existing checkpoint topic compacted if it
// is not (one made where the broker could not compact, such as the
// built-in broker before it could): only the latest checkpoint per key is
// needed, and without compaction the topic grows by one record per epoch
// forever. A broker or an ACL that refuses leaves the topic as it is.
func compactCheckpointTopic(ctx context.Context, adm *kadm.Client, topic string, log *slog.Logger) {
	described, err := adm.DescribeTopicConfigs(ctx, topic)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = described.On(topic, nil); err == nil && rc.Err == nil {
			for _, cfg := range rc.Configs {
				if cfg.Key == "cleanup.policy" && strings.Contains(cfg.MaybeValue(), "compact") {
					return
				}
			}
		}
		if err == nil {
			err = rc.Err
		}
	}
	if err == nil {
		var res kadm.AlterConfigsResponses
		res, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "cleanup.policy", Value: ptr("compact")}}, topic)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = res.On(topic, nil); err == nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		log.Warn("kafka sink: the checkpoint topic is not compacted and could not be made so; it keeps one record per epoch (set cleanup.policy=compact on it to bound it)",
			"topic", topic, "err", err)
		return
	}
	log.Info("kafka sink: made the checkpoint topic compacted (cleanup.policy=compact): it keeps the latest checkpoint per key", "topic", topic)
}

func ptr[T any](v T) *T { return &v }

// checkpointSegmentBytes is the segment.bytes of a checkpoint topic the
// sink creates: compaction only bounds a topic whose segments roll, and a
// cluster's default (1 GiB) would take millions of epochs to.
const checkpointSegmentBytes = 1 << 20
