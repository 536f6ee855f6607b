package broker

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceN writes n records round-robin over the topic's partitions.
func produceN(t *testing.T, addr, topic string, from, n int) {
	t.Helper()
	cl := newKgo(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// groupReader is a kafka-go group Reader that records what it consumed.
type groupReader struct {
	r      *kafkago.Reader
	cancel context.CancelFunc
	mu     sync.Mutex
	parts  map[int]bool
	values map[string]int
	done   chan struct{}
}

func startReader(t *testing.T, addr, topic, group string) *groupReader {
	t.Helper()
	gr := &groupReader{parts: map[int]bool{}, values: map[string]int{}, done: make(chan struct{})}
	gr.r = kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: []string{addr}, GroupID: group, Topic: topic,
		SessionTimeout: 2 * time.Second, HeartbeatInterval: 200 * time.Millisecond,
		RebalanceTimeout: 3 * time.Second, JoinGroupBackoff: 100 * time.Millisecond,
		MaxWait: 100 * time.Millisecond, StartOffset: kafkago.FirstOffset,
	})
	ctx, cancel := context.WithCancel(context.Background())
	gr.cancel = cancel
	go func() {
		defer close(gr.done)
		for {
			m, err := gr.r.FetchMessage(ctx)
			if err != nil {
				return
			}
			gr.mu.Lock()
			gr.parts[m.Partition] = true
			gr.values[string(m.Value)]++
			gr.mu.Unlock()
			gr.r.CommitMessages(ctx, m)
		}
	}()
	t.Cleanup(gr.close)
	return gr
}

// close stops the reader; a synchronous commit in flight is abandoned
// (kafka-go would otherwise wait for it forever once the reader closed).
func (gr *groupReader) close() {
	gr.cancel()
	gr.r.Close()
	<-gr.done
}

func (gr *groupReader) snapshot() (parts []int, values map[string]int) {
	gr.mu.Lock()
	defer gr.mu.Unlock()
	for p := range gr.parts {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	values = map[string]int{}
	for v, n := range gr.values {
		values[v] = n
	}
	return parts, values
}

// waitConsumed waits until the readers together saw every value in
// [from, to), and returns how many times each was seen.
func waitConsumed(t *testing.T, readers []*groupReader, from, to int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := map[string]int{}
		for _, r := range readers {
			_, v := r.snapshot()
			for k, n := range v {
				all[k] += n
			}
		}
		missing := 0
		for i := from; i < to; i++ {
			if all[strconv.Itoa(i)] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the values %d..%d never consumed", missing, from, to-1)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKafkaGoReadersSplitAGroupAndTakeOver(t *testing.T) {
	_, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "six", 6)
	produceN(t, addr, "six", 0, 600)
	readers := []*groupReader{
		startReader(t, addr, "six", "split"),
		startReader(t, addr, "six", "split"),
		startReader(t, addr, "six", "split"),
	}
	waitConsumed(t, readers, 0, 600)
	// Once stable, the three readers hold disjoint partitions covering all six.
	deadline := time.Now().Add(20 * time.Second)
	for {
		produceN(t, addr, "six", 10_000, 60)
		time.Sleep(300 * time.Millisecond)
		seen := map[int]int{}
		for _, r := range readers {
			r.mu.Lock()
			clear(r.parts)
			r.mu.Unlock()
		}
		produceN(t, addr, "six", 20_000, 60)
		waitConsumed(t, readers, 20_000, 20_060)
		counts := []int{}
		for _, r := range readers {
			parts, _ := r.snapshot()
			counts = append(counts, len(parts))
			for _, p := range parts {
				seen[p]++
			}
		}
		if len(seen) == 6 && counts[0] == 2 && counts[1] == 2 && counts[2] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions per reader %v, holders per partition %v; want 2 each, disjoint", counts, seen)
		}
	}

	// One reader leaves: the other two take over its partitions.
	readers[2].close()
	produceN(t, addr, "six", 1000, 600)
	waitConsumed(t, readers[:2], 1000, 1600)

	// A member that joins and then stops heartbeating (as a killed process
	// would) is expired after its session timeout, and the live readers
	// take its partitions back.
	zombieJoins(t, addr, "split", "six")
	waitMembers(t, addr, "split", 3)
	produceN(t, addr, "six", 2000, 600)
	waitConsumed(t, readers[:2], 2000, 2600)
	waitMembers(t, addr, "split", 2)
}

// waitMembers waits until DescribeGroups reports n members in a stable group.
func waitMembers(t *testing.T, addr, group string, n int) {
	t.Helper()
	cl := newKgo(t, addr)
	deadline := time.Now().Add(20 * time.Second)
	for {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		g := resp.Groups[0]
		if len(g.Members) == n && g.State == "Stable" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: %d members in state %s, want %d Stable", group, len(g.Members), g.State, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// zombieJoins joins group with a raw client, syncs, and never heartbeats.
func zombieJoins(t *testing.T, addr, group, topic string) {
	t.Helper()
	cl := newKgo(t, addr)
	ctx := ctxT(t)
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{topic}
	join := func(member string) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.ProtocolType = group, member, "consumer"
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 1000, 5000
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := join("")
	if resp.ErrorCode != 0 { // MEMBER_ID_REQUIRED on v4+
		resp = join(resp.MemberID)
	}
	if resp.ErrorCode != 0 {
		t.Fatalf("zombie join: error %d", resp.ErrorCode)
	}
	go func() {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = group, resp.MemberID, resp.Generation
		req.RequestWith(ctx, cl)
	}()
}

func TestCommittedOffsetsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{}) // closed by hand below, to restart
	createTopic(t, newKgo(t, addr), "keep", 2)
	produceN(t, addr, "keep", 0, 100)
	r := startReader(t, addr, "keep", "durable")
	waitConsumed(t, []*groupReader{r}, 0, 100)
	r.close()
	b.Close()

	_, addr = testBrokerDir(t, dir, Options{})
	c := &kafkago.Client{Addr: kafkago.TCP(addr)}
	offs, err := c.ConsumerOffsets(ctxT(t), kafkago.TopicAndGroup{Topic: "keep", GroupId: "durable"})
	if err != nil {
		t.Fatal(err)
	}
	if offs[0] != 50 || offs[1] != 50 {
		t.Fatalf("offsets after restart: %v, want 50 and 50", offs)
	}
	// A new reader in the group resumes there: it sees only new records.
	produceN(t, addr, "keep", 100, 10)
	r2 := startReader(t, addr, "keep", "durable")
	got := waitConsumed(t, []*groupReader{r2}, 100, 110)
	for v := range got {
		if n, _ := strconv.Atoi(v); n < 100 {
			t.Fatalf("a committed record was consumed again: %s", v)
		}
	}
}

func TestFranzGoGroupConsumerResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{}) // closed by hand below, to restart
	createTopic(t, newKgo(t, addr), "fg", 3)
	produceN(t, addr, "fg", 0, 300)

	consume := func(addr string, want int) map[string]int {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("franz"), kgo.ConsumeTopics("fg"),
			kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		seen := map[string]int{}
		ctx := ctxT(t)
		for len(seen) < want {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d: %v", len(seen), want, err)
			}
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return seen
	}
	if got := consume(addr, 300); len(got) != 300 {
		t.Fatalf("first pass: %d", len(got))
	}
	b.Close()
	_, addr = testBrokerDir(t, dir, Options{})
	produceN(t, addr, "fg", 300, 30)
	got := consume(addr, 30)
	for v := range got {
		if n, _ := strconv.Atoi(v); n < 300 {
			t.Fatalf("franz-go group re-consumed committed record %s after restart", v)
		}
	}
	if len(got) != 30 {
		t.Fatal(fmt.Sprint("want 30 new records, got ", len(got)))
	}
}

func TestGroupMetrics(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "m", 1)
	produceN(t, addr, "m", 0, 10)
	r := startReader(t, addr, "m", "watched")
	waitConsumed(t, []*groupReader{r}, 0, 10)
	produceN(t, addr, "m", 10, 5) // the group is now 5 behind, at most
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.Metrics().Collectors()...)
	r.close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName()
			for _, l := range m.Label {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			}
		}
	}
	committed := b.groups.Fetch("watched", nil)[0].Offset
	want := float64(15 - committed)
	if lag, ok := got["sluice_broker_group_lag_records,group=watched,partition=0,topic=m"]; !ok || lag != want || committed < 10 {
		t.Fatalf("group lag = %v (present %v); want 15 - committed %d", lag, ok, committed)
	}
	if got["sluice_broker_groups,state=Empty"] != 1 {
		t.Fatalf("groups by state: %v", got)
	}
	if got["sluice_broker_group_rebalances_total,group=watched"] < 1 {
		t.Fatalf("rebalances not counted: %v", got)
	}
}
