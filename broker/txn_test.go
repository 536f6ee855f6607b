package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/group"
	"github.com/sluicehq/sluice/broker/txn"
)

// eventually waits for cond, polling: for state the broker reaches on its
// own (a timeout abort), where there is nothing to block on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := ctxT(t)
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readToSentinel writes a sentinel record to every partition of topic,
// then reads from offset 0 with the given isolation until it has seen
// every sentinel, and returns the values before them, sorted. The sentinel
// makes "nothing more" observable without waiting for a timeout; with
// read_committed, no transaction may be open.
func readToSentinel(t *testing.T, addr, topic string, partitions int32, committed bool) []string {
	t.Helper()
	ctx := ctxT(t)
	plain := newKgo(t, addr, kgo.DisableIdempotentWrite(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range partitions {
		if err := plain.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("sentinel")}).FirstErr(); err != nil {
			t.Fatalf("sentinel: %v", err)
		}
	}
	plain.Close()
	offs := map[int32]kgo.Offset{}
	for p := range partitions {
		offs[p] = kgo.NewOffset().At(0)
	}
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cons := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond))
	defer cons.Close()
	var out []string
	seen := map[int32]bool{}
	for len(seen) < int(partitions) {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s: %v", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch {
			case string(r.Value) == "sentinel":
				seen[r.Partition] = true
			case seen[r.Partition]:
				t.Errorf("record %q after the sentinel", r.Value)
			default:
				out = append(out, string(r.Value))
			}
		})
	}
	slices.Sort(out)
	return out
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func sorted(lists ...[]string) []string {
	out := slices.Concat(lists...)
	slices.Sort(out)
	return out
}

// runTxn produces vals in one transaction of prod and ends it.
func runTxn(t *testing.T, prod *kgo.Client, vals []string, commit bool) error {
	t.Helper()
	ctx := ctxT(t)
	if err := prod.BeginTransaction(); err != nil {
		t.Fatalf("begin: %v", err)
	}
	for _, v := range vals {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			return err
		}
	}
	return prod.EndTransaction(ctx, kgo.TransactionEndTry(commit))
}

func fetchCommitted(t *testing.T, r kmsg.Requestor, topic string, partition int32, offset int64, maxWait int32) *kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, maxWait, 1, 1<<20
	req.IsolationLevel = 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), r)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return &resp.Topics[0].Partitions[0]
}

func listOffsetIso(t *testing.T, r kmsg.Requestor, topic string, partition int32, isolation int8) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID, req.IsolationLevel = -1, isolation
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = partition, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), r)
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("list offsets: %v %+v", err, resp)
	}
	return resp.Topics[0].Partitions[0].Offset
}

// TestTransactionsReadCommitted commits and aborts transactions with
// franz-go's transactional producer: a read_committed consumer sees
// exactly the committed records, a read_uncommitted one all of them, and
// an open transaction holds the last stable offset back until it commits,
// which wakes a read_committed long-poll.
func TestTransactionsReadCommitted(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "tx", 2)
	prod := newKgo(t, addr, kgo.TransactionalID("tx-1"), kgo.DefaultProduceTopic("tx"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	c1, aborted, c2 := values("c1", 20), values("ab", 20), values("c2", 20)
	for _, step := range []struct {
		vals   []string
		commit bool
	}{{c1, true}, {aborted, false}, {c2, true}} {
		if err := runTxn(t, prod, step.vals, step.commit); err != nil {
			t.Fatalf("transaction: %v", err)
		}
	}
	if got, want := readToSentinel(t, addr, "tx", 2, true), sorted(c1, c2); !slices.Equal(got, want) {
		t.Fatalf("read_committed saw %d records %v, want %v", len(got), got, want)
	}
	if got, want := readToSentinel(t, addr, "tx", 2, false), sorted(c1, aborted, c2); !slices.Equal(got, want) {
		t.Fatalf("read_uncommitted saw %v, want %v", got, want)
	}
	raw := kgoBroker(t, addr)
	p0 := b.topics.partition("tx", 0)
	if f := fetchCommitted(t, raw, "tx", 0, 0, 0); len(f.AbortedTransactions) != 1 || f.LastStableOffset != p0.EndOffset() {
		t.Fatalf("fetch from 0: aborted %+v, LSO %d (end %d)", f.AbortedTransactions, f.LastStableOffset, p0.EndOffset())
	}
	// A fetch that returns only the first committed batch is not told of
	// the abort after it.
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.MaxBytes, req.IsolationLevel = 11, -1, 1, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "tx"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if resp, err := req.RequestWith(ctxT(t), raw); err != nil || len(resp.Topics[0].Partitions[0].RecordBatches) == 0 ||
		len(resp.Topics[0].Partitions[0].AbortedTransactions) != 0 {
		t.Fatalf("small fetch from 0: %v %+v", err, resp)
	}

	// An open transaction: the LSO stays at its first offset.
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("open-0")}, &kgo.Record{Value: []byte("open-1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lso := listOffsetIso(t, raw, "tx", 0, 1)
	if end := listOffsetIso(t, raw, "tx", 0, 0); lso >= end || lso != p0.LastStableOffset() {
		t.Fatalf("open transaction: LSO %d, end %d", lso, end)
	}
	if f := fetchCommitted(t, raw, "tx", 0, lso, 0); len(f.RecordBatches) != 0 || f.LastStableOffset != lso {
		t.Fatalf("read_committed fetch at the LSO returned %d bytes, LSO %d", len(f.RecordBatches), f.LastStableOffset)
	}
	// A long-poll at the LSO returns once the commit moves it; it would
	// otherwise wait its full 20 seconds and return nothing.
	got := make(chan *kmsg.FetchResponseTopicPartition, 1)
	go func() { got <- fetchCommitted(t, raw, "tx", 0, lso, 20000) }()
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if f := <-got; len(f.RecordBatches) == 0 || f.LastStableOffset != p0.EndOffset() {
		t.Fatalf("long-poll after the commit: %d bytes, LSO %d, end %d", len(f.RecordBatches), f.LastStableOffset, p0.EndOffset())
	}
	if d, _ := b.txns.Describe("tx-1"); d.State != txn.CompleteCommit {
		t.Fatalf("coordinator state %s", d.State)
	}
}

// TestGroupTransactSessionExactlyOnce runs franz-go's read-process-write
// loop (GroupTransactSession) across a topic, aborting its first
// transaction: the output holds every input record exactly once, and the
// group's offsets are those of the committed transactions.
func TestGroupTransactSessionExactlyOnce(t *testing.T) {
	b, addr := testBroker(t, Options{})
	admin := newKgo(t, addr)
	createTopic(t, admin, "eos-in", 2)
	createTopic(t, admin, "eos-out", 2)
	in := values("in", 300)
	inProd := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i, v := range in {
		if err := inProd.ProduceSync(ctxT(t), &kgo.Record{Topic: "eos-in", Partition: int32(i % 2), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(addr), kgo.TransactionalID("eos"),
		kgo.ConsumerGroup("eos-g"), kgo.ConsumeTopics("eos-in"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(), kgo.DefaultProduceTopic("eos-out"), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.FetchMaxBytes(2000), kgo.WithLogger(kgo.BasicLogger(testWriter{t}, kgo.LogLevelWarn, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ctx := ctxT(t)
	done, rounds := 0, 0
	for done < len(in) {
		fs := sess.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		rounds++
		commit := kgo.TransactionEndTry(rounds != 1) // the first one is aborted
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			sess.Produce(ctx, &kgo.Record{Value: []byte("out-" + string(r.Value))}, func(_ *kgo.Record, err error) {
				if err != nil && bool(commit) {
					t.Errorf("produce: %v", err)
				}
			})
		})
		committed, err := sess.End(ctx, commit)
		if err != nil {
			t.Fatalf("end round %d: %v", rounds, err)
		}
		if committed {
			done += n
		}
	}
	want := make([]string, len(in))
	for i, v := range in {
		want[i] = "out-" + v
	}
	slices.Sort(want)
	if got := readToSentinel(t, addr, "eos-out", 2, true); !slices.Equal(got, want) {
		t.Fatalf("output has %d records, want %d exactly once (%d rounds)", len(got), len(want), rounds)
	}
	offs := b.groups.Fetch("eos-g", []group.TopicPartition{{Topic: "eos-in", Partition: 0}, {Topic: "eos-in", Partition: 1}})
	for _, o := range offs {
		if o.Offset != int64(len(in)/2) {
			t.Fatalf("committed offset %+v, want %d", o, len(in)/2)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestTransactionalProducerIsFenced starts a second producer with the same
// transactional id while the first has a transaction open: the first's
// transaction is aborted and it gets a fenced error.
func TestTransactionalProducerIsFenced(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "fence", 1)
	ctx := ctxT(t)
	first := newKgo(t, addr, kgo.TransactionalID("fence"), kgo.DefaultProduceTopic("fence"))
	if err := first.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := first.ProduceSync(ctx, &kgo.Record{Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	before, _ := b.txns.Describe("fence")
	second := newKgo(t, addr, kgo.TransactionalID("fence"), kgo.DefaultProduceTopic("fence"))
	if err := runTxn(t, second, []string{"second"}, true); err != nil {
		t.Fatalf("second producer: %v", err)
	}
	after, _ := b.txns.Describe("fence")
	if after.ProducerID != before.ProducerID || after.Epoch <= before.Epoch {
		t.Fatalf("epoch not bumped: %+v then %+v", before, after)
	}
	err := first.EndTransaction(ctx, kgo.TryCommit)
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("the fenced producer's commit: %v", err)
	}
	if got := readToSentinel(t, addr, "fence", 1, true); !slices.Equal(got, []string{"second"}) {
		t.Fatalf("read_committed: %v", got)
	}
	if got := readToSentinel(t, addr, "fence", 1, false); !slices.Equal(got, []string{"second", "zombie"}) {
		t.Fatalf("read_uncommitted: %v", got)
	}
	// The zombie's old epoch is refused on the wire too.
	raw := kgoBroker(t, addr)
	add := kmsg.NewPtrAddPartitionsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch = "fence", before.ProducerID, before.Epoch
	at := kmsg.NewAddPartitionsToTxnRequestTopic()
	at.Topic, at.Partitions = "fence", []int32{0}
	add.Topics = append(add.Topics, at)
	resp, err := add.RequestWith(ctx, raw)
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.ProducerFenced.Code {
		t.Fatalf("AddPartitionsToTxn from the old epoch: %v %+v", err, resp)
	}
}

// TestTransactionTimeoutAborts leaves a transaction open past its
// transaction.timeout.ms: the broker aborts it under a bumped epoch, so
// its records are never visible and its producer cannot commit it.
func TestTransactionTimeoutAborts(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "slow", 1)
	ctx := ctxT(t)
	prod := newKgo(t, addr, kgo.TransactionalID("slow"), kgo.DefaultProduceTopic("slow"), kgo.TransactionTimeout(300*time.Millisecond))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("late")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := b.topics.partition("slow", 0)
	if p.LastStableOffset() != 0 {
		t.Fatalf("LSO %d with the transaction open", p.LastStableOffset())
	}
	eventually(t, "the timeout abort", func() bool {
		d, _ := b.txns.Describe("slow")
		return d.State == txn.CompleteAbort
	})
	if p.LastStableOffset() != p.EndOffset() {
		t.Fatalf("LSO %d after the abort, end %d", p.LastStableOffset(), p.EndOffset())
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("commit of a transaction the broker aborted succeeded")
	}
	if got := readToSentinel(t, addr, "slow", 1, true); len(got) != 0 {
		t.Fatalf("read_committed saw %v", got)
	}
}

// txnRequests sends raw transactional requests, for error codes.
type txnRequests struct {
	t   *testing.T
	r   kmsg.Requestor
	id  string
	pid int64
	ep  int16
}

func (x *txnRequests) init(timeoutMs int32) int16 {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr(x.id), timeoutMs
	resp, err := req.RequestWith(ctxT(x.t), x.r)
	if err != nil {
		x.t.Fatal(err)
	}
	if resp.ErrorCode == 0 {
		x.pid, x.ep = resp.ProducerID, resp.ProducerEpoch
	}
	return resp.ErrorCode
}

func (x *txnRequests) addPartition(version int16, topic string, p int32) int16 {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = x.id, x.pid, x.ep
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{p}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(x.t), x.r)
	if err != nil {
		x.t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

func (x *txnRequests) addOffsets(g string) int16 {
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = x.id, x.pid, x.ep, g
	resp, err := req.RequestWith(ctxT(x.t), x.r)
	if err != nil {
		x.t.Fatal(err)
	}
	return resp.ErrorCode
}

func (x *txnRequests) commitOffset(g, topic string, p int32, off int64) int16 {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = x.id, g, x.pid, x.ep
	req.Generation = -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = p, off
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(x.t), x.r)
	if err != nil {
		x.t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

func (x *txnRequests) end(version int16, commit bool) int16 {
	req := kmsg.NewPtrEndTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = x.id, x.pid, x.ep, commit
	resp, err := req.RequestWith(ctxT(x.t), x.r)
	if err != nil {
		x.t.Fatal(err)
	}
	return resp.ErrorCode
}

func offsetFetch(t *testing.T, r kmsg.Requestor, g, topic string, p int32, requireStable bool) (int64, int16) {
	t.Helper()
	// OffsetFetch v8+ (what kgo negotiates) batches groups.
	req := kmsg.NewPtrOffsetFetchRequest()
	req.RequireStable = requireStable
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = g
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic, rt.Partitions = topic, []int32{p}
	rg.Topics = append(rg.Topics, rt)
	req.Groups = append(req.Groups, rg)
	resp, err := req.RequestWith(ctxT(t), r)
	if err != nil {
		t.Fatal(err)
	}
	rp := resp.Groups[0].Topics[0].Partitions[0]
	return rp.Offset, rp.ErrorCode
}

// TestTxnOffsetCommitVisibleOnlyAfterCommit: offsets committed inside a
// transaction reach OffsetFetch when the transaction commits, never when
// it aborts.
func TestTxnOffsetCommitVisibleOnlyAfterCommit(t *testing.T) {
	_, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "src", 1)
	raw := kgoBroker(t, addr)
	x := &txnRequests{t: t, r: raw, id: "offs"}
	steps := []struct {
		name string
		code int16
	}{
		{"init", x.init(10000)},
		{"add offsets", x.addOffsets("g")},
		{"commit offset", x.commitOffset("g", "src", 0, 42)},
	}
	for _, s := range steps {
		if s.code != 0 {
			t.Fatalf("%s: %s", s.name, kerr.ErrorForCode(s.code))
		}
	}
	if off, code := offsetFetch(t, raw, "g", "src", 0, false); off != -1 || code != 0 {
		t.Fatalf("before commit: offset %d code %d", off, code)
	}
	if _, code := offsetFetch(t, raw, "g", "src", 0, true); code != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("require_stable before commit: code %d", code)
	}
	if code := x.end(3, true); code != 0 {
		t.Fatalf("commit: %s", kerr.ErrorForCode(code))
	}
	if off, code := offsetFetch(t, raw, "g", "src", 0, true); off != 42 || code != 0 {
		t.Fatalf("after commit: offset %d code %d", off, code)
	}
	// An aborted transaction's offsets are dropped.
	x.addOffsets("g")
	x.commitOffset("g", "src", 0, 99)
	if code := x.end(3, false); code != 0 {
		t.Fatalf("abort: %s", kerr.ErrorForCode(code))
	}
	if off, _ := offsetFetch(t, raw, "g", "src", 0, true); off != 42 {
		t.Fatalf("after abort: offset %d", off)
	}
}

// TestTransactionBadInput sends transactional requests out of order or
// with wrong ids: each gets one clear error code and the broker carries on.
func TestTransactionBadInput(t *testing.T) {
	_, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "bad", 2)
	raw := kgoBroker(t, addr)
	ghost := &txnRequests{t: t, r: raw, id: "never-initialised", pid: 12345, ep: 0}
	x := &txnRequests{t: t, r: raw, id: "bad"}
	expect := func(name string, got int16, want *kerr.Error) {
		t.Helper()
		if got != want.Code {
			t.Errorf("%s: %v, want %v", name, kerr.ErrorForCode(got), want)
		}
	}
	expect("EndTxn of an unknown transactional id", ghost.end(3, true), kerr.InvalidProducerIDMapping)
	expect("AddPartitionsToTxn of an unknown transactional id", ghost.addPartition(3, "bad", 0), kerr.InvalidProducerIDMapping)
	empty := &txnRequests{t: t, r: raw, id: ""}
	expect("InitProducerId with an empty transactional id", empty.init(10000), kerr.InvalidRequest)
	expect("timeout over the maximum", x.init(int32((txn.MaxTimeout + time.Second).Milliseconds())), kerr.InvalidTransactionTimeout)
	expect("init", x.init(10000), nil2ok())
	expect("EndTxn with nothing in the transaction", x.end(3, true), kerr.InvalidTxnState)
	expect("TxnOffsetCommit without AddOffsetsToTxn", x.commitOffset("g", "bad", 0, 1), kerr.InvalidTxnState)
	expect("AddOffsetsToTxn", x.addOffsets("g"), nil2ok())
	{
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = x.id, "g", x.pid, x.ep
		req.MemberID, req.Generation = "ghost", 3
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "bad"
		rt.Partitions = append(rt.Partitions, kmsg.NewTxnOffsetCommitRequestTopicPartition())
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), raw)
		if err != nil {
			t.Fatal(err)
		}
		expect("TxnOffsetCommit v3 from a member the group does not have", resp.Topics[0].Partitions[0].ErrorCode, kerr.UnknownMemberID)
	}
	expect("AddPartitionsToTxn of an unknown topic", x.addPartition(3, "nope", 0), kerr.UnknownTopicOrPartition)
	wrong := *x
	wrong.pid++
	expect("AddPartitionsToTxn with a wrong producer id", wrong.addPartition(3, "bad", 0), kerr.InvalidProducerIDMapping)
	old := *x
	x.init(10000) // bumps the epoch
	expect("AddPartitionsToTxn v3 from a fenced epoch", old.addPartition(3, "bad", 0), kerr.ProducerFenced)

	// Produce: transactional batches only into partitions of the open
	// transaction, from the current epoch.
	batch := func(pid int64, epoch int16, seq int32) []byte {
		b := idemTestBatch(pid, epoch, seq, "v")
		b[22] |= 0x10
		reCRC(b)
		return b
	}
	expect("produce to a partition not in the transaction", produceRaw(t, raw, "bad", batch(x.pid, x.ep, 0)).ErrorCode, kerr.InvalidTxnState)
	expect("add partition 0", x.addPartition(3, "bad", 0), nil2ok())
	expect("produce", produceRaw(t, raw, "bad", batch(x.pid, x.ep, 0)).ErrorCode, nil2ok())
	expect("produce from the fenced epoch", produceRaw(t, raw, "bad", batch(old.pid, old.ep, 1)).ErrorCode, kerr.InvalidProducerEpoch)
	expect("commit", x.end(3, true), nil2ok())
	expect("EndTxn retried after the commit", x.end(3, true), nil2ok())
	expect("abort after the commit", x.end(3, false), kerr.InvalidTxnState)
	expect("produce after the commit", produceRaw(t, raw, "bad", batch(x.pid, x.ep, 1)).ErrorCode, kerr.InvalidTxnState)

	// Still serving.
	if err := newKgo(t, addr).ProduceSync(ctxT(t), &kgo.Record{Topic: "bad", Value: []byte("ok")}).FirstErr(); err != nil {
		t.Fatalf("broker after bad input: %v", err)
	}
}

// TestFencedCodeByVersion: requests from before KIP-588 get
// INVALID_PRODUCER_EPOCH where newer ones get PRODUCER_FENCED.
func TestFencedCodeByVersion(t *testing.T) {
	for _, c := range []struct {
		version, knows int16
		want           *kerr.Error
	}{{1, 2, kerr.InvalidProducerEpoch}, {2, 2, kerr.ProducerFenced}, {3, 4, kerr.InvalidProducerEpoch}, {4, 4, kerr.ProducerFenced}} {
		if got := fenced(kerr.ProducerFenced, c.version, c.knows); got != c.want.Code {
			t.Errorf("v%d (fenced from v%d): %d, want %v", c.version, c.knows, got, c.want)
		}
	}
	if got := fenced(kerr.InvalidTxnState, 0, 2); got != kerr.InvalidTxnState.Code {
		t.Errorf("other codes pass through: %d", got)
	}
}

// nil2ok is the "no error" expectation of TestTransactionBadInput.
func nil2ok() *kerr.Error { return &kerr.Error{Code: 0} }

// TestAbortedIndexSurvivesRestart aborts transactions, restarts the
// broker (cleanly, then after a lost .txnindex and snapshot) and checks a
// read_committed consumer still drops the aborted records.
func TestAbortedIndexSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	createTopic(t, newKgo(t, addr), "idx", 1)
	prod := newKgo(t, addr, kgo.TransactionalID("idx"), kgo.DefaultProduceTopic("idx"))
	var want []string
	for i := range 6 {
		vals := values(fmt.Sprintf("t%d", i), 5)
		if err := runTxn(t, prod, vals, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			want = append(want, vals...)
		}
	}
	slices.Sort(want)
	prod.Close()
	aborted := len(b.topics.partition("idx", 0).AbortedTxns(0, 1<<62))
	if aborted != 3 {
		t.Fatalf("%d aborted transactions indexed", aborted)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, addr2 := testBrokerDir(t, dir, Options{})
	if n := len(b2.topics.partition("idx", 0).AbortedTxns(0, 1<<62)); n != aborted {
		t.Fatalf("after restart: %d aborted transactions indexed, want %d", n, aborted)
	}
	if got := readToSentinel(t, addr2, "idx", 1, true); !slices.Equal(got, want) {
		t.Fatalf("read_committed after restart: %v, want %v", got, want)
	}
}

// reCRC recomputes a batch's CRC after a test changed it.
func reCRC(b []byte) {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
}

// TestProducerRecoversAfterTimeoutAbort: a producer whose transaction the
// broker aborted on timeout gets INVALID_PRODUCER_EPOCH on its next
// produce, aborts, and carries on with new transactions (KIP-360/588
// recovery), as against Kafka.
func TestProducerRecoversAfterTimeoutAbort(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "recover", 1)
	ctx := ctxT(t)
	prod := newKgo(t, addr, kgo.TransactionalID("recover"), kgo.DefaultProduceTopic("recover"),
		kgo.TransactionTimeout(300*time.Millisecond), kgo.RecordRetries(3))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("lost-1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the timeout abort", func() bool { d, _ := b.txns.Describe("recover"); return d.State == txn.CompleteAbort })
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("lost-2")}).FirstErr(); err == nil {
		t.Fatal("produce into a transaction the broker aborted succeeded")
	}
	if err := prod.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("abort after the timeout: %v", err)
	}
	if err := runTxn(t, prod, []string{"kept"}, true); err != nil {
		t.Fatalf("next transaction: %v", err)
	}
	if got := readToSentinel(t, addr, "recover", 1, true); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("read_committed: %v", got)
	}
}

// TestConcurrentTransactions runs transactional producers side by side on
// the same partitions, committing and aborting, while a read_committed
// consumer long-polls: in the end it has exactly the committed records.
func TestConcurrentTransactions(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "conc", 3)
	const producers, txnsEach, perTxn = 4, 15, 7
	var want, all []string
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for w := range producers {
		for i := range txnsEach {
			vals := values(fmt.Sprintf("w%d-t%02d", w, i), perTxn)
			all = append(all, vals...)
			if (w+i)%3 != 0 {
				want = append(want, vals...)
			}
		}
		prod := newKgo(t, addr, kgo.TransactionalID(fmt.Sprintf("conc-%d", w)), kgo.DefaultProduceTopic("conc"),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		wg.Go(func() {
			ctx := ctxT(t)
			for i := range txnsEach {
				if err := prod.BeginTransaction(); err != nil {
					errs <- err
					return
				}
				for _, v := range values(fmt.Sprintf("w%d-t%02d", w, i), perTxn) {
					prod.Produce(ctx, &kgo.Record{Value: []byte(v)}, nil)
				}
				if err := prod.Flush(ctx); err != nil {
					errs <- err
					return
				}
				if err := prod.EndTransaction(ctx, kgo.TransactionEndTry((w+i)%3 != 0)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// A read_committed consumer reading while they write.
	offs := map[int32]kgo.Offset{}
	for p := range int32(3) {
		offs[p] = kgo.NewOffset().At(0)
	}
	cons := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"conc": offs}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	var live []string
	ctx := ctxT(t)
	for len(live) < len(want) {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume: %v (have %d of %d)", err, len(live), len(want))
		}
		fs.EachRecord(func(r *kgo.Record) { live = append(live, string(r.Value)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(want)
	slices.Sort(live)
	if !slices.Equal(live, want) {
		t.Fatalf("live read_committed consumer got %d records, want %d", len(live), len(want))
	}
	if got := readToSentinel(t, addr, "conc", 3, true); !slices.Equal(got, want) {
		t.Fatalf("read_committed: %d records, want %d", len(got), len(want))
	}
	if got, w := readToSentinel(t, addr, "conc", 3, false), sorted(all); !slices.Equal(got, w) {
		t.Fatalf("read_uncommitted: %d records, want %d", len(got), len(w))
	}
	checkStable(t, b, "conc", 3)
}

// TestAbortedIndexAcrossRetention: with small segments, retention by size
// deletes the oldest transactions' segments (and their .txnindex); a
// read_committed consumer from the new log start still drops every
// aborted record that is left, before and after a restart.
func TestAbortedIndexAcrossRetention(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "ret", 1, 1
	for k, v := range map[string]string{"segment.bytes": "1024", "retention.bytes": "4096"} {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	if resp, err := req.RequestWith(ctxT(t), newKgo(t, addr)); err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create: %v %v", err, resp)
	}
	prod := newKgo(t, addr, kgo.TransactionalID("ret"), kgo.DefaultProduceTopic("ret"))
	committed := map[string]bool{}
	for i := range 30 {
		vals := values(fmt.Sprintf("r%02d", i), 3)
		if err := runTxn(t, prod, vals, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			committed[v] = i%2 == 0
		}
	}
	prod.Close()
	p := b.topics.partition("ret", 0)
	before := len(p.AbortedTxns(0, 1<<62))
	b.topics.enforceRetention(time.Now())
	after := len(p.AbortedTxns(0, 1<<62))
	if p.StartOffset() == 0 || after >= before || after == 0 {
		t.Fatalf("retention: log start %d, aborted transactions %d then %d", p.StartOffset(), before, after)
	}
	check := func(addr string) {
		t.Helper()
		got := readToSentinel(t, addr, "ret", 1, true)
		if len(got) == 0 {
			t.Fatal("nothing left after retention")
		}
		for _, v := range got {
			if !committed[v] {
				t.Fatalf("read_committed served %s of an aborted transaction", v)
			}
		}
	}
	check(addr)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, addr2 := testBrokerDir(t, dir, Options{})
	if n := len(b2.topics.partition("ret", 0).AbortedTxns(0, 1<<62)); n != after {
		t.Fatalf("after restart %d aborted transactions, want %d", n, after)
	}
	check(addr2)
}

// TestGroupTransactSessionsRebalance runs two GroupTransactSessions in one
// group, the second joining mid-way: the rebalance must not duplicate or
// lose output (a session aborts what it read from partitions it lost;
// TxnOffsetCommit v3 checks the generation).
func TestGroupTransactSessionsRebalance(t *testing.T) {
	b, addr := testBroker(t, Options{})
	admin := newKgo(t, addr)
	createTopic(t, admin, "rb-in", 4)
	createTopic(t, admin, "rb-out", 2)
	in := values("in", 800)
	inProd := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i, v := range in {
		inProd.Produce(ctxT(t), &kgo.Record{Topic: "rb-in", Partition: int32(i % 4), Value: []byte(v)}, nil)
	}
	if err := inProd.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// All output committed ends both sessions; one that has nothing left
	// to read waits in PollFetches until then.
	all, allDone := context.WithCancel(ctxT(t))
	defer allDone()
	var mu sync.Mutex
	done := 0
	rounds := map[string]int{}
	run := func(id string, started chan<- struct{}) error {
		sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(addr), kgo.TransactionalID(id),
			kgo.ConsumerGroup("rb-g"), kgo.ConsumeTopics("rb-in"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.RequireStableFetchOffsets(), kgo.DefaultProduceTopic("rb-out"), kgo.FetchMaxWait(50*time.Millisecond),
			kgo.FetchMaxPartitionBytes(500), kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(100*time.Millisecond))
		if err != nil {
			return err
		}
		defer sess.Close()
		for all.Err() == nil {
			fs := sess.PollFetches(all)
			if all.Err() != nil {
				return nil
			}
			if err := fs.Err0(); err != nil {
				return err
			}
			if fs.NumRecords() == 0 {
				continue
			}
			if err := sess.Begin(); err != nil {
				return err
			}
			n := fs.NumRecords()
			fs.EachRecord(func(r *kgo.Record) {
				sess.Produce(all, &kgo.Record{Value: []byte("out-" + string(r.Value))}, nil)
			})
			if started != nil {
				// The first session's first transaction stays open until
				// the second session has joined: the rebalance happens
				// in the middle of it.
				close(started)
				started = nil
				eventually(t, "the second member", func() bool {
					d, _ := b.groups.Describe("rb-g")
					return len(d.Members) == 2 && d.State == group.Stable
				})
			}
			committed, err := sess.End(all, kgo.TryCommit)
			if err != nil {
				return err
			}
			if committed {
				mu.Lock()
				done += n
				rounds[id]++
				if done >= len(in) {
					allDone()
				}
				mu.Unlock()
			}
		}
		return nil
	}
	errs := make(chan error, 2)
	started := make(chan struct{})
	go func() { errs <- run("rb-1", started) }()
	<-started
	go func() { errs <- run("rb-2", nil) }()
	for range 2 {
		if err := <-errs; err != nil {
			mu.Lock()
			t.Fatalf("%v (%d of %d committed)", err, done, len(in))
		}
	}
	want := make([]string, len(in))
	for i, v := range in {
		want[i] = "out-" + v
	}
	slices.Sort(want)
	if got := readToSentinel(t, addr, "rb-out", 2, true); !slices.Equal(got, want) {
		dups, missing := 0, 0
		seen := map[string]int{}
		for _, v := range got {
			seen[v]++
			if seen[v] == 2 {
				dups++
			}
		}
		for _, v := range want {
			if seen[v] == 0 {
				missing++
			}
		}
		t.Fatalf("output has %d records (%d duplicated, %d missing), want %d exactly once", len(got), dups, missing, len(want))
	}
	t.Logf("committed transactions per session: %v", rounds)
}

// TestTransactionIntrospection: ListTransactions, DescribeTransactions and
// DescribeProducers show an open transaction and the producer holding the
// last stable offset back.
func TestTransactionIntrospection(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "intro", 2)
	ctx := ctxT(t)
	prod := newKgo(t, addr, kgo.TransactionalID("intro"), kgo.DefaultProduceTopic("intro"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Partition: 1, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	raw := kgoBroker(t, addr)
	d, _ := b.txns.Describe("intro")

	list := kmsg.NewPtrListTransactionsRequest()
	list.StateFilters = []string{"Ongoing", "Bogus"}
	list.DurationFilterMillis = -1
	lresp, err := list.RequestWith(ctx, raw)
	if err != nil || len(lresp.TransactionStates) != 1 || lresp.TransactionStates[0].TransactionalID != "intro" ||
		lresp.TransactionStates[0].ProducerID != d.ProducerID || !slices.Equal(lresp.UnknownStateFilters, []string{"Bogus"}) {
		t.Fatalf("ListTransactions: %v %+v", err, lresp)
	}
	list.StateFilters = []string{"CompleteCommit"}
	if lresp, err := list.RequestWith(ctx, raw); err != nil || len(lresp.TransactionStates) != 0 {
		t.Fatalf("ListTransactions CompleteCommit: %v %+v", err, lresp)
	}

	desc := kmsg.NewPtrDescribeTransactionsRequest()
	desc.TransactionalIDs = []string{"intro", "nobody"}
	dresp, err := desc.RequestWith(ctx, raw)
	if err != nil || len(dresp.TransactionStates) != 2 {
		t.Fatalf("DescribeTransactions: %v %+v", err, dresp)
	}
	if st := dresp.TransactionStates[0]; st.State != "Ongoing" || st.ProducerEpoch != d.Epoch || st.StartTimestamp <= 0 ||
		len(st.Topics) != 1 || st.Topics[0].Topic != "intro" || !slices.Equal(st.Topics[0].Partitions, []int32{1}) {
		t.Fatalf("DescribeTransactions intro: %+v", st)
	}
	if st := dresp.TransactionStates[1]; st.ErrorCode != kerr.TransactionalIDNotFound.Code {
		t.Fatalf("DescribeTransactions of an unknown id: %+v", st)
	}

	prods := kmsg.NewPtrDescribeProducersRequest()
	pt := kmsg.NewDescribeProducersRequestTopic()
	pt.Topic, pt.Partitions = "intro", []int32{1, 7}
	prods.Topics = append(prods.Topics, pt)
	presp, err := prods.RequestWith(ctx, raw)
	if err != nil || len(presp.Topics) != 1 || len(presp.Topics[0].Partitions) != 2 {
		t.Fatalf("DescribeProducers: %v %+v", err, presp)
	}
	p1 := presp.Topics[0].Partitions[0]
	if len(p1.ActiveProducers) != 1 || p1.ActiveProducers[0].ProducerID != d.ProducerID ||
		p1.ActiveProducers[0].CurrentTxnStartOffset != b.topics.partition("intro", 1).LastStableOffset() {
		t.Fatalf("DescribeProducers intro/1: %+v", p1)
	}
	if p7 := presp.Topics[0].Partitions[1]; p7.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("DescribeProducers of a missing partition: %+v", p7)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
}
