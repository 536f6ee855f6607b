package broker

import (
	"fmt"
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
