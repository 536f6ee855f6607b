// Package kafkatest reads topics the way a read_committed consumer would,
// for tests that check what a pipeline made visible in Kafka.
package kafkatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readTimeout bounds one ReadCommitted call.
const readTimeout = 30 * time.Second

// ReadCommitted returns every committed record of topic, up to each
// partition's last stable offset at the time of the call, in partition
// then offset order; none when the topic does not exist. Transaction markers and aborted records are left out.
func ReadCommitted(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil && errors.Is(starts.Error(), kerr.UnknownTopicOrPartition) {
		return nil // no topic, no records
	}
	if err != nil || starts.Error() != nil {
		t.Fatalf("list start offsets of %s: %v %v", topic, err, starts.Error())
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("list stable offsets of %s: %v %v", topic, err, ends.Error())
	}
	from := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition -> stable end still to reach
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > s.Offset {
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
			left[o.Partition] = o.Offset
		}
	})
	if len(left) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	byPart := map[int32][]*kgo.Record{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %v with partitions %v not read to their stable end", topic, ctx.Err(), left)
		}
		for _, fe := range fs.Errors() {
			t.Fatalf("read %s: %v", topic, fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			if !r.Attrs.IsControl() {
				byPart[r.Partition] = append(byPart[r.Partition], r)
			}
			if r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		}
	}
	var out []*kgo.Record
	for p := int32(0); len(byPart) > 0; p++ {
		out = append(out, byPart[p]...)
		delete(byPart, p)
	}
	return out
}

// Values returns the values of records as strings.
func Values(records []*kgo.Record) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = string(r.Value)
	}
	return out
}
