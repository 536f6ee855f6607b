package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// Consumer-protocol groups (KIP-848) driven by franz-go's own
// implementation (kgo.ServerSideBalancer), over a socket.

// kip848Options are broker options that make consumer-protocol groups move
// fast enough for tests: members heartbeat every 100ms.
func kip848Options() Options {
	return Options{ConsumerGroupHeartbeatInterval: 100 * time.Millisecond, ConsumerGroupSessionTimeout: 3 * time.Second}
}

// kip848Member is a kgo group consumer on the consumer protocol that
// records what it consumed.
type kip848Member struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	values map[string]int
}

func startKip848Member(t *testing.T, addr, group, topic string, balancer kgo.GroupBalancer, extra ...kgo.Opt) *kip848Member {
	t.Helper()
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ServerSideBalancer(),
		kgo.Balancers(balancer), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond), kgo.AutoCommitInterval(100 * time.Millisecond),
	}, extra...)
	m := &kip848Member{cl: newKgo(t, addr, opts...), done: make(chan struct{}), values: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := m.cl.PollFetches(ctx)
			m.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { m.values[string(r.Value)]++ })
			m.mu.Unlock()
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// stop stops polling and closes the client, which leaves the group
// (member epoch -1) after committing what it consumed.
func (m *kip848Member) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cl.Close()
	m.cancel = nil
}

func (m *kip848Member) consumed() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps848Clone(m.values)
}

func maps848Clone(in map[string]int) map[string]int {
	out := make(map[string]int, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// waitStableAssignment polls ConsumerGroupDescribe until the group is
// Stable with members members whose assignments cover every partition of
// topic exactly once, and returns the description.
func waitStableAssignment(t *testing.T, adm *kadm.Client, group, topic string, partitions, members int) kadm.DescribedConsumerGroup {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ds, err := adm.DescribeConsumerGroups(ctxT(t), group)
		if err != nil {
			last = err.Error()
		} else if d, ok := ds[group]; !ok || d.Err != nil {
			last = fmt.Sprintf("%+v", d.Err)
		} else {
			last = describe848(d)
			if d.State == "Stable" && len(d.Members) == members && coversOnce(d, topic, partitions) {
				return d
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("group %s never had %d stable members covering %s's %d partitions once; last: %s", group, members, topic, partitions, last)
	return kadm.DescribedConsumerGroup{}
}

func describe848(d kadm.DescribedConsumerGroup) string {
	s := fmt.Sprintf("state %s epoch %d assignment epoch %d assignor %s;", d.State, d.Epoch, d.AssignmentEpoch, d.AssignorName)
	for _, m := range d.Members {
		s += fmt.Sprintf(" %s@%d %v", m.MemberID, m.MemberEpoch, m.Assignment)
	}
	return s
}

func coversOnce(d kadm.DescribedConsumerGroup, topic string, partitions int) bool {
	seen := map[int32]int{}
	for _, m := range d.Members {
		if m.MemberEpoch != d.AssignmentEpoch {
			return false
		}
		for p := range m.Assignment[topic] {
			seen[p]++
		}
	}
	if len(seen) != partitions {
		return false
	}
	for _, n := range seen {
		if n != 1 {
			return false
		}
	}
	return true
}

func waitAllConsumed(t *testing.T, members []*kip848Member, from, to int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		all := map[string]int{}
		for _, m := range members {
			for k, v := range m.consumed() {
				all[k] += v
			}
		}
		missing := 0
		for i := from; i < to; i++ {
			if all[strconv.Itoa(i)] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("records %d..%d were not all consumed", from, to)
}

func TestConsumerProtocolGroupFranzGo(t *testing.T) {
	for _, tc := range []struct {
		assignor string
		balancer kgo.GroupBalancer
	}{
		{"uniform", kgo.CooperativeStickyBalancer()},
		{"range", kgo.RangeBalancer()},
	} {
		t.Run(tc.assignor, func(t *testing.T) {
			_, addr := testBroker(t, kip848Options())
			const topic, parts = "orders", 6
			admCl := newKgo(t, addr)
			adm := kadm.NewClient(admCl)
			createTopic(t, admCl, topic, parts)
			produceN(t, addr, topic, 0, 60)
			group := "g-" + tc.assignor

			var members []*kip848Member
			for range 3 {
				members = append(members, startKip848Member(t, addr, group, topic, tc.balancer))
			}
			d := waitStableAssignment(t, adm, group, topic, parts, 3)
			if d.AssignorName != tc.assignor {
				t.Fatalf("assignor %q, want %q", d.AssignorName, tc.assignor)
			}
			for _, m := range d.Members {
				if n := len(m.Assignment[topic]); n != 2 {
					t.Fatalf("a member of 3 holds %d of 6 partitions: %s", n, describe848(d))
				}
				if m.MemberType != 1 {
					t.Fatalf("member type %d, want 1 (consumer protocol)", m.MemberType)
				}
			}
			waitAllConsumed(t, members, 0, 60)

			// The protocol is visible to the classic group APIs as Kafka
			// shows it: ListGroups lists it, DescribeGroups says Dead.
			listed, err := adm.ListGroups(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if lg, ok := listed[group]; !ok || lg.ProtocolType != "consumer" || lg.State != "Stable" || lg.GroupType != "consumer" {
				t.Fatalf("ListGroups: %+v", listed)
			}
			// ListGroups v5 filters by type: kadm describes every
			// consumer-protocol group that way.
			if classic, err := adm.ListGroupsByType(ctxT(t), []string{"classic"}); err != nil || len(classic) != 0 {
				t.Fatalf("classic groups: %v %+v", err, classic)
			}
			if all, err := adm.DescribeConsumerGroups(ctxT(t)); err != nil || len(all) != 1 || all[group].State != "Stable" {
				t.Fatalf("every consumer-protocol group: %v %+v", err, all)
			}

			// One member leaves: the other two take its partitions.
			members[0].stop()
			waitStableAssignment(t, adm, group, topic, parts, 2)
			produceN(t, addr, topic, 60, 60)
			waitAllConsumed(t, members[1:], 60, 120)

			// Offsets the members committed are fetched back: every
			// partition's committed offset reaches its end (10 + 10
			// records each).
			for _, m := range members[1:] {
				if err := m.cl.CommitUncommittedOffsets(ctxT(t)); err != nil {
					t.Fatalf("commit: %v", err)
				}
			}
			offs, err := adm.FetchOffsets(ctxT(t), group)
			if err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < parts; p++ {
				o, ok := offs.Lookup(topic, p)
				if !ok || o.At != 20 {
					t.Fatalf("committed offset of %s/%d: %+v (found %v), want 20", topic, p, o, ok)
				}
			}
		})
	}
}

// heartbeat848 sends one ConsumerGroupHeartbeat over kgo's raw client.
func heartbeat848(t *testing.T, cl kmsg.Requestor, mod func(*kmsg.ConsumerGroupHeartbeatRequest)) *kmsg.ConsumerGroupHeartbeatResponse {
	t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version = 1
	req.RebalanceTimeoutMillis = 5000
	mod(req)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func errOf(code int16) error {
	return kerr.ErrorForCode(code)
}

// TestConsumerProtocolRevokesBeforeReassigning drives two members by hand:
// when the second joins, a partition moves only once the first reports it
// no longer owns it, and the first's epoch only advances then.
func TestConsumerProtocolRevokesBeforeReassigning(t *testing.T) {
	_, addr := testBroker(t, kip848Options())
	cl := newKgo(t, addr)
	createTopic(t, cl, "t", 2)
	meta, err := kadm.NewClient(cl).Metadata(ctxT(t), "t")
	if err != nil {
		t.Fatal(err)
	}
	id := meta.Topics["t"].ID
	if id == ([16]byte{}) {
		t.Fatal("metadata gives topic t no id")
	}

	a := heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.SubscribedTopicNames = "g", "A", 0, []string{"t"}
		r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	})
	if a.ErrorCode != 0 || a.MemberEpoch != 1 || a.Assignment == nil || len(a.Assignment.Topics) != 1 || len(a.Assignment.Topics[0].Partitions) != 2 {
		t.Fatalf("first member's join: %v %+v", errOf(a.ErrorCode), a)
	}
	owned := func(ps ...int32) []kmsg.ConsumerGroupHeartbeatRequestTopic {
		tp := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		tp.TopicID, tp.Partitions = id, ps
		return []kmsg.ConsumerGroupHeartbeatRequestTopic{tp}
	}
	b := heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.SubscribedTopicNames = "g", "B", 0, []string{"t"}
		r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	})
	if b.ErrorCode != 0 || b.MemberEpoch != 2 || b.Assignment == nil || len(b.Assignment.Topics) != 0 {
		t.Fatalf("second member joins at epoch 2 with nothing yet (A still holds both): %v %+v", errOf(b.ErrorCode), b)
	}
	// A is told to keep one partition, at its old epoch.
	a = heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.Topics = "g", "A", 1, owned(0, 1)
	})
	if a.ErrorCode != 0 || a.MemberEpoch != 1 || a.Assignment == nil || len(a.Assignment.Topics[0].Partitions) != 1 {
		t.Fatalf("A should be asked to revoke one partition at epoch 1: %v %+v", errOf(a.ErrorCode), a)
	}
	kept := a.Assignment.Topics[0].Partitions[0]
	// B still gets nothing while A holds both.
	b = heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.Topics = "g", "B", 2, owned()
	})
	if b.ErrorCode != 0 || (b.Assignment != nil && len(b.Assignment.Topics) != 0) {
		t.Fatalf("B got partitions A has not released: %+v", b)
	}
	// A's stale epoch with more than it may own is fenced.
	fenced := heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.Topics = "g", "A", 3, owned(kept)
	})
	if fenced.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Fatalf("an epoch ahead of the coordinator's: %v, want FENCED_MEMBER_EPOCH", errOf(fenced.ErrorCode))
	}
	// A acknowledges: it moves to epoch 2, and B then gets the other.
	a = heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.Topics = "g", "A", 1, owned(kept)
	})
	if a.ErrorCode != 0 || a.MemberEpoch != 2 {
		t.Fatalf("A after revoking: %v %+v", errOf(a.ErrorCode), a)
	}
	b = heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.Topics = "g", "B", 2, owned()
	})
	if b.ErrorCode != 0 || b.Assignment == nil || len(b.Assignment.Topics) != 1 || b.Assignment.Topics[0].Partitions[0] == kept {
		t.Fatalf("B after A revoked: %v %+v", errOf(b.ErrorCode), b)
	}

	// Offsets: OffsetCommit v9 with the member epoch; an older client
	// version, a wrong epoch and an unknown member are refused as Kafka
	// refuses them.
	// kgo sends the newest version both sides speak; a second client is
	// capped at OffsetCommit v8.
	v8 := kversion.Stable()
	v8.SetMaxKeyVersion(int16(kmsg.OffsetCommit), 8)
	cl8 := newKgo(t, addr, kgo.MaxVersions(v8))
	commit := func(version int16, member string, epoch int32) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "g", member, epoch
		var c kmsg.Requestor = cl
		if version == 8 {
			c = cl8
		}
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = kept, 5
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), c)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	for _, c := range []struct {
		version int16
		member  string
		epoch   int32
		want    *kerr.Error
	}{
		{9, "A", 2, nil},
		{8, "A", 2, kerr.UnsupportedVersion},
		{9, "A", 3, kerr.StaleMemberEpoch},
		{9, "Z", 2, kerr.UnknownMemberID},
		{9, "", -1, kerr.UnknownMemberID}, // outside the group while it has members
	} {
		if got := commit(c.version, c.member, c.epoch); got != code(c.want) {
			t.Errorf("OffsetCommit v%d member %q epoch %d: %v, want %v", c.version, c.member, c.epoch, errOf(got), c.want)
		}
	}
	fetch := func(member string, epoch int32) (int16, int64) {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = 9
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group, rg.MemberID, rg.MemberEpoch = "g", kmsg.StringPtr(member), epoch
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		g := resp.Groups[0]
		if g.ErrorCode != 0 || len(g.Topics) == 0 {
			return g.ErrorCode, -1
		}
		return 0, g.Topics[0].Partitions[0].Offset
	}
	if ec, off := fetch("A", 2); ec != 0 || off != 5 {
		t.Fatalf("OffsetFetch v9 by A at its epoch: %v offset %d, want offset 5", errOf(ec), off)
	}
	if ec, _ := fetch("A", 1); ec != kerr.StaleMemberEpoch.Code {
		t.Fatalf("OffsetFetch v9 with an old epoch: %v, want STALE_MEMBER_EPOCH", errOf(ec))
	}

	// A leaves: B ends up with both partitions.
	leave := heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch = "g", "A", -1
	})
	if leave.ErrorCode != 0 || leave.MemberEpoch != -1 {
		t.Fatalf("leave: %v %+v", errOf(leave.ErrorCode), leave)
	}
	b = heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.MemberEpoch, r.Topics = "g", "B", 2, owned(b.Assignment.Topics[0].Partitions...)
	})
	if b.ErrorCode != 0 || b.MemberEpoch != 3 || b.Assignment == nil || len(b.Assignment.Topics[0].Partitions) != 2 {
		t.Fatalf("B after A left: %v %+v", errOf(b.ErrorCode), b)
	}
}

// TestConsumerProtocolRefusesMixing: with Kafka's migration policy
// disabled, neither protocol joins a group the other has members in; an
// empty group converts.
func TestConsumerProtocolRefusesMixing(t *testing.T) {
	_, addr := testBroker(t, kip848Options())
	cl := newKgo(t, addr)
	createTopic(t, cl, "t", 1)

	// A consumer-protocol member; a classic JoinGroup is refused.
	j := heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.SubscribedTopicNames = "g", "A", []string{"t"}
		r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	})
	if j.ErrorCode != 0 {
		t.Fatal(errOf(j.ErrorCode))
	}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 7, "g", 6000, 6000
	join.MemberID, join.ProtocolType = "", "consumer"
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "range", (&kmsg.ConsumerMemberMetadata{Topics: []string{"t"}}).AppendTo(nil)
	join.Protocols = append(join.Protocols, p)
	jr, err := join.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if jr.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("classic join of a consumer-protocol group: %v, want INCONSISTENT_GROUP_PROTOCOL", errOf(jr.ErrorCode))
	}
	// DescribeGroups answers it Dead, as Kafka's v0-v5 do.
	dg, err := kadm.NewClient(cl).DescribeGroups(ctxT(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	if dg["g"].State != "Dead" {
		t.Fatalf("DescribeGroups of a consumer-protocol group: %+v", dg["g"])
	}
	// The member leaves; the empty group becomes classic for the join.
	heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group, r.MemberID, r.MemberEpoch = "g", "A", -1 })
	c := newKgo(t, addr, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"))
	waitMembers(t, addr, "g", 1)
	// And a heartbeat to the classic group with a member is refused.
	for _, epoch := range []int32{0, 1} {
		h := heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.Group, r.MemberID, r.MemberEpoch, r.SubscribedTopicNames = "g", "B", epoch, []string{"t"}
			r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		})
		if h.ErrorCode != kerr.GroupIDNotFound.Code {
			t.Fatalf("heartbeat (epoch %d) to a classic group with members: %v, want GROUP_ID_NOT_FOUND", epoch, errOf(h.ErrorCode))
		}
	}
	c.Close()
}

// TestConsumerProtocolTransactionalCopy runs a consume-transform-produce
// loop on the consumer protocol: TxnOffsetCommit carries the member epoch,
// and what is committed is read back exactly once.
func TestConsumerProtocolTransactionalCopy(t *testing.T) {
	_, addr := testBroker(t, kip848Options())
	admCl := newKgo(t, addr)
	createTopic(t, admCl, "in", 3)
	createTopic(t, admCl, "out", 1)
	produceN(t, addr, "in", 0, 30)

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(addr), kgo.TransactionalID("copier"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumerGroup("copy"), kgo.ConsumeTopics("in"), kgo.ServerSideBalancer(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.DefaultProduceTopic("out"),
		kgo.RequireStableFetchOffsets(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	copied := 0
	checked := false
	deadline := time.Now().Add(30 * time.Second)
	for copied < 30 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := sess.PollFetches(ctx)
		cancel()
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(ctxT(t), &kgo.Record{Value: r.Value}, nil)
			n++
		})
		if n > 0 && !checked {
			// The session's group runs the consumer protocol.
			ds, err := kadm.NewClient(admCl).DescribeConsumerGroups(ctxT(t), "copy")
			if err != nil || ds["copy"].Err != nil || len(ds["copy"].Members) != 1 {
				t.Fatalf("the copier's group is not a consumer-protocol group of one: %v %+v", err, ds["copy"])
			}
			checked = true
		}
		committed, err := sess.End(ctxT(t), kgo.TryCommit)
		if err != nil {
			t.Fatalf("end transaction: %v", err)
		}
		if committed {
			copied += n
		}
	}
	if copied != 30 {
		t.Fatalf("copied %d of 30 records", copied)
	}
	offs, err := kadm.NewClient(admCl).FetchOffsets(ctxT(t), "copy")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	offs.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != 30 {
		t.Fatalf("committed offsets add up to %d, want 30", total)
	}
	// read_committed sees each record once.
	rd := newKgo(t, addr, kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 30 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fs := rd.PollFetches(ctx)
		cancel()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			break
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	sort.Strings(got)
	got = slices.Compact(got)
	if len(got) != 30 {
		t.Fatalf("read %d distinct records from out, want 30", len(got))
	}
}

// TestConsumerProtocolRegexFranzGo: franz-go sends a regex subscription
// (ConsumeRegex without excludes) and the broker resolves it: every
// matching topic is consumed, the others are not.
func TestConsumerProtocolRegexFranzGo(t *testing.T) {
	_, addr := testBroker(t, kip848Options())
	cl := newKgo(t, addr)
	for _, name := range []string{"orders", "ordinals", "other"} {
		createTopic(t, cl, name, 2)
	}
	produceN(t, addr, "orders", 0, 10)
	produceN(t, addr, "ordinals", 10, 10)
	produceN(t, addr, "other", 100, 10)
	m := startKip848Member(t, addr, "rx", "ord.*", kgo.CooperativeStickyBalancer(), kgo.ConsumeRegex())
	waitAllConsumed(t, []*kip848Member{m}, 0, 20)
	d, err := kadm.NewClient(cl).DescribeConsumerGroups(ctxT(t), "rx")
	if err != nil || d["rx"].Err != nil || len(d["rx"].Members) != 1 || d["rx"].Members[0].SubscribedTopicRegex == nil {
		t.Fatalf("the member should subscribe by regex: %v %+v", err, d["rx"])
	}
	if _, ok := d["rx"].Members[0].Assignment["other"]; ok {
		t.Fatalf("a topic the regex does not match was assigned: %+v", d["rx"].Members[0].Assignment)
	}
	for v := range m.consumed() {
		if n, _ := strconv.Atoi(v); n >= 100 {
			t.Fatalf("consumed %s from other", v)
		}
	}
}

// TestConsumerProtocolTakesOverAnEmptyClassicGroup: a classic group whose
// members left converts to the consumer protocol when a KIP-848 member
// joins, and that member resumes from the classic group's committed
// offsets; ListGroups then shows the consumer type.
func TestConsumerProtocolTakesOverAnEmptyClassicGroup(t *testing.T) {
	_, addr := testBroker(t, kip848Options())
	cl := newKgo(t, addr)
	createTopic(t, cl, "t", 2)
	produceN(t, addr, "t", 0, 10)
	classic := newKgo(t, addr, kgo.ConsumerGroup("up"), kgo.ConsumeTopics("t"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	n := 0
	for n < 10 {
		fs := classic.PollFetches(ctxT(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if err := classic.CommitUncommittedOffsets(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	classic.Close() // leaves: the classic group is empty, its offsets stay

	produceN(t, addr, "t", 10, 10)
	m := startKip848Member(t, addr, "up", "t", kgo.CooperativeStickyBalancer())
	waitAllConsumed(t, []*kip848Member{m}, 10, 20)
	for v := range m.consumed() {
		if n, _ := strconv.Atoi(v); n < 10 {
			t.Fatalf("the consumer-protocol member read %s again: it should resume at the classic group's offsets", v)
		}
	}
	listed, err := kadm.NewClient(cl).ListGroups(ctxT(t))
	if err != nil || listed["up"].GroupType != "consumer" {
		t.Fatalf("after the conversion: %v %+v", err, listed)
	}
}
