package broker

import (
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestKafkaGoRoundTrip(t *testing.T) {
	_, addr := testBroker(t, Options{})
	ctx := ctxT(t)

	// Conn: create the topic and look at it the way kafka-go's admin
	// helpers do.
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.CreateTopics(kafka.TopicConfig{Topic: "events", NumPartitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	parts, err := conn.ReadPartitions("events")
	if err != nil || len(parts) != 2 {
		t.Fatalf("read partitions: %v %v", parts, err)
	}

	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        "events",
		RequiredAcks: kafka.RequireAll,
		Balancer:     &kafka.Hash{},
		BatchTimeout: 5 * time.Millisecond,
	}
	defer w.Close()
	const n = 500
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte("k" + strconv.Itoa(i%7)), Value: fmt.Appendf(nil, "v%d", i)}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}

	// Reader on each partition from the first offset.
	total := 0
	for p := range 2 {
		pc, err := kafka.DialLeader(ctx, "tcp", addr, "events", p)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := pc.ReadOffsets()
		pc.Close()
		if err != nil || first != 0 {
			t.Fatalf("partition %d offsets: %d %d %v", p, first, last, err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "events", Partition: p, MaxWait: 100 * time.Millisecond})
		for off := int64(0); off < last; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("partition %d read: %v", p, err)
			}
			if m.Offset != off {
				t.Fatalf("partition %d: offset %d, want %d", p, m.Offset, off)
			}
			total++
		}
		r.Close()
	}
	if total != n {
		t.Fatalf("read %d messages, wrote %d", total, n)
	}

	// Conn produce and batch read on one partition.
	pc, err := kafka.DialLeader(ctx, "tcp", addr, "events", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	end, err := pc.ReadLastOffset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteMessages(kafka.Message{Value: []byte("via-conn-1")}, kafka.Message{Value: []byte("via-conn-2")}); err != nil {
		t.Fatalf("conn write: %v", err)
	}
	if _, err := pc.Seek(end, kafka.SeekAbsolute); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	batch := pc.ReadBatch(1, 1<<20)
	var got []string
	for {
		m, err := batch.ReadMessage()
		if err != nil {
			break
		}
		got = append(got, string(m.Value))
	}
	if err := batch.Close(); err != nil {
		t.Fatalf("batch: %v", err)
	}
	if fmt.Sprint(got) != "[via-conn-1 via-conn-2]" {
		t.Fatalf("conn read %q", got)
	}
}

// kafka-go's Client negotiates versions per request; Sluice's Kafka source
// reads with it (Metadata, ListOffsets, Fetch by offset).
func TestKafkaGoClient(t *testing.T) {
	_, addr := testBroker(t, Options{})
	ctx := ctxT(t)
	cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: &kafka.Transport{}}
	ct, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "direct", NumPartitions: 2, ReplicationFactor: 1},
		{Topic: "replicated", NumPartitions: 1, ReplicationFactor: 3},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ct.Errors["direct"] != nil || ct.Errors["replicated"] == nil {
		t.Fatalf("create errors: %v", ct.Errors)
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{"direct"}})
	if err != nil || len(md.Topics) != 1 || len(md.Topics[0].Partitions) != 2 {
		t.Fatalf("metadata: %+v %v", md, err)
	}
	var recs []kafka.Record
	for i := range 20 {
		recs = append(recs, kafka.Record{Value: kafka.NewBytes(fmt.Appendf(nil, "r%d", i))})
	}
	pr, err := cl.Produce(ctx, &kafka.ProduceRequest{Topic: "direct", Partition: 1, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(recs...)})
	if err != nil || pr.Error != nil || pr.BaseOffset != 0 {
		t.Fatalf("produce: %+v %v", pr, err)
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		"direct": {kafka.FirstOffsetOf(1), kafka.LastOffsetOf(1)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	po := lo.Topics["direct"][0]
	if po.Error != nil || po.FirstOffset != 0 || po.LastOffset != 20 {
		t.Fatalf("offsets: %+v", po)
	}
	// Read offsets [5, 20) the way the direct source does.
	next := int64(5)
	for next < 20 {
		resp, err := cl.Fetch(ctx, &kafka.FetchRequest{Topic: "direct", Partition: 1, Offset: next,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
		if err != nil || resp.Error != nil {
			t.Fatalf("fetch at %d: %v %v", next, err, resp.Error)
		}
		for {
			r, err := resp.Records.ReadRecord()
			if err != nil {
				break
			}
			if r.Offset < next {
				continue // the batch holding next starts before it
			}
			if r.Offset != next {
				t.Fatalf("offset %d after %d", r.Offset, next-1)
			}
			v, _ := io.ReadAll(r.Value)
			if string(v) != fmt.Sprintf("r%d", r.Offset) {
				t.Fatalf("offset %d holds %q", r.Offset, v)
			}
			next++
		}
	}
}
