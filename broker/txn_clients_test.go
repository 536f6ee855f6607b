package broker

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker/txn"
)

// TestKafkaGoReadsTransactionalData: kafka-go (v0.4.51) knows nothing of
// transactions and hands control records to the application as messages,
// as it does against Kafka (segmentio/kafka-go#1332, #1446): key 00 00 00
// 01 (COMMIT), value six zero bytes. Committed records with markers between
// them must read without errors, in order, up to the log end.
func TestKafkaGoReadsTransactionalData(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "kg-tx", 1)
	prod := newKgo(t, addr, kgo.TransactionalID("kg"), kgo.DefaultProduceTopic("kg-tx"))
	var want []string
	for i := range 4 {
		vals := values("kg"+string(rune('a'+i)), 5)
		if err := runTxn(t, prod, vals, true); err != nil {
			t.Fatal(err)
		}
		want = append(want, vals...)
	}
	end := b.topics.partition("kg-tx", 0).EndOffset()
	for _, iso := range []kafka.IsolationLevel{kafka.ReadUncommitted, kafka.ReadCommitted} {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "kg-tx", Partition: 0,
			IsolationLevel: iso, MaxWait: 100 * time.Millisecond})
		var got []string
		markers := 0
		ctx := ctxT(t)
		for last := int64(-1); last < end-1; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("kafka-go read (isolation %d) after %v: %v", iso, got, err)
			}
			if m.Offset <= last || m.Offset >= end {
				t.Fatalf("offset %d after %d, end %d", m.Offset, last, end)
			}
			last = m.Offset
			if string(m.Key) == "\x00\x00\x00\x01" && len(m.Value) == 6 {
				markers++
				continue
			}
			got = append(got, string(m.Value))
		}
		r.Close()
		if !slices.Equal(got, want) || markers != 4 {
			t.Fatalf("kafka-go (isolation %d) read %v and %d markers, want %v and 4", iso, got, markers, want)
		}
	}
}

// TestKcatReadCommitted reads with librdkafka (kcat), whose default
// isolation is read_committed: committed records only, and read_uncommitted
// sees the aborted ones too.
func TestKcatReadCommitted(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	_, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "rd-tx", 1)
	prod := newKgo(t, addr, kgo.TransactionalID("rd"), kgo.DefaultProduceTopic("rd-tx"))
	committed, aborted := values("ok", 5), values("no", 5)
	if err := runTxn(t, prod, committed, true); err != nil {
		t.Fatal(err)
	}
	if err := runTxn(t, prod, aborted, false); err != nil {
		t.Fatal(err)
	}
	if err := runTxn(t, prod, values("ok2", 3), true); err != nil {
		t.Fatal(err)
	}
	read := func(args ...string) []string {
		t.Helper()
		cmd := exec.CommandContext(ctxT(t), kcat, append([]string{"-b", addr, "-t", "rd-tx", "-C", "-e", "-q", "-f", "%s\n"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "ERROR") {
			t.Fatalf("kcat %v: %v\n%s", args, err, out)
		}
		lines := strings.Fields(string(out))
		slices.Sort(lines)
		return lines
	}
	if got, want := read(), sorted(committed, values("ok2", 3)); !slices.Equal(got, want) {
		t.Fatalf("kcat read_committed: %v, want %v", got, want)
	}
	if got, want := read("-X", "isolation.level=read_uncommitted"), sorted(committed, aborted, values("ok2", 3)); !slices.Equal(got, want) {
		t.Fatalf("kcat read_uncommitted: %v, want %v", got, want)
	}
}

// TestKcatTransactionalProducer runs librdkafka's transactional producer
// (kcat -X transactional.id, which commits on exit) twice with the same
// id: its own implementation of InitProducerId, AddPartitionsToTxn and
// EndTxn, strict about states and codes. The second run fences the first
// epoch; both transactions are committed.
func TestKcatTransactionalProducer(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "rd-txp", 2)
	var epochs []int16
	for _, in := range []string{"a\nb\nc\n", "d\ne\n"} {
		cmd := exec.CommandContext(ctxT(t), kcat, "-b", addr, "-t", "rd-txp", "-P", "-X", "transactional.id=kcat-txn")
		cmd.Stdin = strings.NewReader(in)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Transaction successfully committed") {
			t.Fatalf("kcat transactional produce: %v\n%s", err, out)
		}
		d, _ := b.txns.Describe("kcat-txn")
		if d.State != txn.CompleteCommit {
			t.Fatalf("state after kcat: %s", d.State)
		}
		epochs = append(epochs, d.Epoch)
	}
	if epochs[1] <= epochs[0] {
		t.Fatalf("epochs %v: the second producer did not bump it", epochs)
	}
	if got := readToSentinel(t, addr, "rd-txp", 2, true); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("read_committed: %v", got)
	}
}
