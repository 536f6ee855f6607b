package group

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestAssignorsProperties: for random members, subscriptions and previous
// targets, every partition of a subscribed topic goes to exactly one
// member that subscribes to it; uniform keeps members whose subscriptions
// are the same within one partition of each other.
func TestAssignorsProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	topicNames := []string{"a", "b", "c", "d"}
	for round := range 500 {
		in := assignInput{members: map[string][]string{}, partitions: map[string]int32{}, previous: map[string]assignment{}}
		for _, tn := range topicNames {
			in.partitions[tn] = int32(1 + rng.IntN(12))
		}
		homogeneous := rng.IntN(2) == 0
		n := 1 + rng.IntN(7)
		for i := range n {
			id := fmt.Sprintf("m%d", i)
			var subs []string
			for _, tn := range topicNames {
				if homogeneous && tn != "d" || !homogeneous && rng.IntN(2) == 0 {
					subs = append(subs, tn)
				}
			}
			in.members[id] = subs
			prev := assignment{}
			for range rng.IntN(6) {
				tn := topicNames[rng.IntN(len(topicNames))]
				prev.add(tn, int32(rng.IntN(14))) // may name partitions that no longer exist
			}
			in.previous[id] = prev
		}
		for _, name := range []string{UniformAssignor, RangeAssignor} {
			out := runAssignor(name, in)
			owners := map[tp]int{}
			for id, a := range out {
				a.each(func(tn string, p int32) {
					owners[tp{tn, p}]++
					subscribed := false
					for _, s := range in.members[id] {
						subscribed = subscribed || s == tn
					}
					if !subscribed || p >= in.partitions[tn] {
						t.Fatalf("round %d %s: %s got %s/%d it cannot have", round, name, id, tn, p)
					}
				})
			}
			for _, tn := range topicNames {
				wanted := false
				for _, subs := range in.members {
					for _, s := range subs {
						wanted = wanted || s == tn
					}
				}
				for p := range in.partitions[tn] {
					if want := map[bool]int{true: 1}[wanted]; owners[tp{tn, p}] != want {
						t.Fatalf("round %d %s: %s/%d has %d owners, want %d", round, name, tn, p, owners[tp{tn, p}], want)
					}
				}
			}
			if name == UniformAssignor && homogeneous {
				lo, hi := 1<<30, 0
				for _, a := range out {
					lo, hi = min(lo, a.count()), max(hi, a.count())
				}
				if hi-lo > 1 {
					t.Fatalf("round %d: uniform left counts from %d to %d among like members", round, lo, hi)
				}
			}
		}
	}
}

// TestUniformIsSticky: a member joining takes partitions only from others,
// each keeping the rest of what it had.
func TestUniformIsSticky(t *testing.T) {
	in := assignInput{
		members:    map[string][]string{"a": {"t"}, "b": {"t"}},
		partitions: map[string]int32{"t": 6},
		previous:   map[string]assignment{},
	}
	first := runAssignor(UniformAssignor, in)
	in.members["c"] = []string{"t"}
	in.previous = first
	second := runAssignor(UniformAssignor, in)
	for _, id := range []string{"a", "b"} {
		if second[id].count() != 2 || second[id].minus(first[id]).count() != 0 {
			t.Fatalf("%s had %v, now %v: it should keep 2 of its own", id, first[id], second[id])
		}
	}
	if second["c"].count() != 2 {
		t.Fatalf("the new member got %v", second["c"])
	}
}

func testTopics() map[string]TopicInfo {
	return map[string]TopicInfo{"t": {ID: [16]byte{7}, Partitions: 4}}
}

func hb(member string, epoch int32, owned ...int32) HeartbeatRequest {
	r := HeartbeatRequest{Group: "g", MemberID: member, MemberEpoch: epoch, RebalanceTimeout: -1}
	if epoch == 0 {
		r.RebalanceTimeout, r.SubscribedTopics = 10000, []string{"t"}
	}
	if epoch >= 0 {
		r.Owned = []TopicPartitions{{ID: [16]byte{7}, Partitions: owned}}
		if epoch == 0 {
			r.Owned = []TopicPartitions{}
		}
	}
	return r
}

func mustHB(t *testing.T, c *Coordinator, r HeartbeatRequest) HeartbeatResult {
	t.Helper()
	res := c.ConsumerHeartbeat(r)
	if res.Err != nil {
		t.Fatalf("heartbeat %+v: %v %s", r, res.Err, res.Message)
	}
	return res
}

func held(res HeartbeatResult) []int32 {
	var out []int32
	for _, tp := range res.Assignment {
		out = append(out, tp.Partitions...)
	}
	return out
}

// TestConsumerSessionAndRebalanceTimeouts: a member that stops
// heartbeating is dropped after the session timeout, and one that does
// not revoke within its rebalance timeout is fenced; either way its
// partitions go to the others.
func TestConsumerSessionAndRebalanceTimeouts(t *testing.T) {
	c, clk := newTestCoordinator(t)
	c.Topics = testTopics
	c.ConsumerSessionTimeout = 5 * time.Second
	a := mustHB(t, c, hb("A", 0))
	if len(held(a)) != 4 {
		t.Fatalf("A alone holds %v", held(a))
	}
	mustHB(t, c, hb("B", 0))
	// A is asked to give up two partitions but never answers again: after
	// its rebalance timeout (10s) it is fenced... its session (5s) ends
	// first, so B keeps heartbeating and A expires.
	for range 6 {
		clk.advance(time.Second)
		mustHB(t, c, hb("B", c.memberEpoch("g", "B")))
		c.Tick()
	}
	b := mustHB(t, c, hb("B", c.memberEpoch("g", "B")))
	if !b.SendAssignment || len(held(b)) != 4 {
		t.Fatalf("B after A's session ended: %+v", b)
	}
	if res := c.ConsumerHeartbeat(hb("A", 1, 0, 1, 2, 3)); res.Err != kerr.UnknownMemberID {
		t.Fatalf("A after expiry: %v, want UNKNOWN_MEMBER_ID", res.Err)
	}

	// Rebalance timeout: C joins; B keeps heartbeating without revoking.
	c.ConsumerSessionTimeout = time.Hour
	mustHB(t, c, hb("C", 0))
	epochB := c.memberEpoch("g", "B")
	r := mustHB(t, c, hb("B", epochB, 0, 1, 2, 3))
	if len(held(r)) != 2 {
		t.Fatalf("B should be asked to keep 2: %v", held(r))
	}
	for range 11 {
		clk.advance(time.Second)
		c.ConsumerHeartbeat(hb("B", epochB, 0, 1, 2, 3))
		c.Tick()
	}
	if res := c.ConsumerHeartbeat(hb("B", epochB, 0, 1, 2, 3)); res.Err != kerr.UnknownMemberID {
		t.Fatalf("B after not revoking in time: %v, want UNKNOWN_MEMBER_ID (fenced)", res.Err)
	}
	cres := mustHB(t, c, hb("C", c.memberEpoch("g", "C")))
	if len(held(cres)) != 4 {
		t.Fatalf("C after B was fenced: %v", held(cres))
	}
}

// TestConsumerStaticMember: a static member leaving with epoch -2 keeps its
// assignment, and its next instance takes it over without a rebalance; a
// second instance under a live one is UNRELEASED_INSTANCE_ID.
func TestConsumerStaticMember(t *testing.T) {
	c, _ := newTestCoordinator(t)
	c.Topics = testTopics
	inst := "i1"
	join := func(member string) HeartbeatRequest {
		r := hb(member, 0)
		r.InstanceID = &inst
		return r
	}
	a := mustHB(t, c, join("A"))
	if res := c.ConsumerHeartbeat(join("A2")); res.Err != kerr.UnreleasedInstanceID {
		t.Fatalf("a second live instance: %v, want UNRELEASED_INSTANCE_ID", res.Err)
	}
	leave := hb("A", -2)
	leave.InstanceID = &inst
	if res := mustHB(t, c, leave); res.MemberEpoch != -2 {
		t.Fatalf("static leave answered epoch %d", res.MemberEpoch)
	}
	epochBefore := c.groups["g"].consumer.epoch
	a2 := mustHB(t, c, join("A2"))
	if a2.MemberEpoch != a.MemberEpoch || len(held(a2)) != 4 || c.groups["g"].consumer.epoch != epochBefore {
		t.Fatalf("the new instance should take over epoch %d and 4 partitions without a new group epoch: %+v", a.MemberEpoch, a2)
	}
	stale := hb("A", a.MemberEpoch, 0)
	stale.InstanceID = &inst
	if res := c.ConsumerHeartbeat(stale); res.Err != kerr.FencedInstanceID {
		t.Fatalf("the old instance: %v, want FENCED_INSTANCE_ID", res.Err)
	}
}

// memberEpoch reads a member's epoch, for tests.
func (c *Coordinator) memberEpoch(group, member string) int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.groups[group].consumer.members[member]; m != nil {
		return m.epoch
	}
	return -1
}

// TestConsumerRegexSubscription: a regex matches whole topic names (as
// Kafka's RE2J), never internal topics; an invalid one is
// INVALID_REGULAR_EXPRESSION.
func TestConsumerRegexSubscription(t *testing.T) {
	c, _ := newTestCoordinator(t)
	c.Topics = func() map[string]TopicInfo {
		return map[string]TopicInfo{
			"orders":             {ID: [16]byte{1}, Partitions: 2},
			"orders-dlq":         {ID: [16]byte{2}, Partitions: 1},
			"xorders":            {ID: [16]byte{3}, Partitions: 1},
			"__consumer_offsets": {ID: [16]byte{4}, Partitions: 1},
		}
	}
	re := "orders.*|__.*"
	r := HeartbeatRequest{Group: "g", MemberID: "A", RebalanceTimeout: 1000, SubscribedRegex: &re, Owned: []TopicPartitions{}}
	res := mustHB(t, c, r)
	got := map[string][]int32{}
	for _, tp := range res.Assignment {
		got[tp.Topic] = tp.Partitions
	}
	if len(got) != 2 || len(got["orders"]) != 2 || len(got["orders-dlq"]) != 1 {
		t.Fatalf("regex %q assigned %v, want orders and orders-dlq only", re, got)
	}
	bad := "orders("
	r = HeartbeatRequest{Group: "g", MemberID: "B", RebalanceTimeout: 1000, SubscribedRegex: &bad, Owned: []TopicPartitions{}}
	if res := c.ConsumerHeartbeat(r); res.Err != kerr.InvalidRegularExpression {
		t.Fatalf("invalid regex: %v, want INVALID_REGULAR_EXPRESSION", res.Err)
	}
}

// TestConsumerReconciliationModel drives random joins, heartbeats, leaves,
// lost responses and expiries against simulated well-behaved clients (each
// holds what its last response assigned) and checks safety after every
// step, no partition held by two clients, and liveness once the churn
// stops: a few rounds of heartbeats reach Stable with every partition held.
func TestConsumerReconciliationModel(t *testing.T) {
	for seed := range uint64(300) {
		// MODEL_TRACE=SEED logs that seed's steps, to read a failure.
		trace := func(string, ...any) {}
		if os.Getenv("MODEL_TRACE") == fmt.Sprint(seed) {
			trace = t.Logf
		}
		rng := rand.New(rand.NewPCG(seed, 99))
		c, clk := newTestCoordinator(t)
		parts := int32(1 + rng.IntN(8))
		c.Topics = func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: [16]byte{7}, Partitions: parts}} }
		c.ConsumerSessionTimeout = 10 * time.Second
		type client struct {
			epoch int32
			held  []int32
			full  bool // the last response was lost: send everything, as clients do after an error
		}
		clients := map[string]*client{}
		step := func(id string, lose bool) {
			cl := clients[id]
			req := hb(id, cl.epoch, cl.held...)
			if cl.full {
				req.RebalanceTimeout, req.SubscribedTopics = 10000, []string{"t"}
			}
			res := c.ConsumerHeartbeat(req)
			trace("hb %s epoch %d held %v full %v lose %v -> err %v epoch %d send %v %v", id, req.MemberEpoch, cl.held, cl.full, lose, res.Err, res.MemberEpoch, res.SendAssignment, held(res))
			if res.Err != nil {
				// Fenced or unknown: the client drops everything and
				// rejoins later, as kgo does.
				delete(clients, id)
				return
			}
			if lose {
				cl.full = true // the response never arrived
				return
			}
			cl.full = false
			cl.epoch = res.MemberEpoch
			if res.SendAssignment {
				cl.held = held(res)
			}
		}
		safe := func(when string) {
			seen := map[int32]string{}
			for id, cl := range clients {
				for _, p := range cl.held {
					if other, ok := seen[p]; ok {
						t.Fatalf("seed %d %s: partition %d held by %s and %s", seed, when, p, other, id)
					}
					seen[p] = id
				}
			}
		}
		for i := range 200 {
			id := fmt.Sprintf("m%d", rng.IntN(5))
			switch op := rng.IntN(10); {
			case clients[id] == nil:
				res := c.ConsumerHeartbeat(hb(id, 0))
				trace("join %s -> err %v epoch %d %v", id, res.Err, res.MemberEpoch, held(res))
				if res.Err == nil {
					clients[id] = &client{epoch: res.MemberEpoch, held: held(res)}
				}
			case op == 0:
				c.ConsumerHeartbeat(hb(id, -1))
				trace("leave %s", id)
				delete(clients, id)
			case op == 1:
				step(id, true)
			case op == 2:
				clk.advance(time.Duration(rng.IntN(4)) * time.Second)
				c.Tick()
				trace("tick to %v", clk.t)
				// A member dropped for its session (or fenced for not
				// revoking in time) has lost its partitions, as a client
				// that cannot heartbeat within its session must assume.
				for id := range clients {
					if c.memberEpoch("g", id) == -1 {
						delete(clients, id)
					}
				}
			default:
				step(id, false)
			}
			safe(fmt.Sprintf("step %d", i))
		}
		// No more churn: everyone heartbeats until the group settles,
		// while members the clients gave up on (fenced, then never
		// rejoined) reach the end of their sessions.
		for round := 0; round < 20; round++ {
			clk.advance(time.Second)
			c.Tick()
			for id := range clients {
				step(id, false)
			}
			safe(fmt.Sprintf("settling round %d", round))
		}
		if len(clients) == 0 {
			continue
		}
		d, _, _ := c.DescribeConsumer("g")
		total := 0
		for _, cl := range clients {
			total += len(cl.held)
		}
		if d.State != Stable || total != int(parts) {
			t.Fatalf("seed %d: after settling the group is %s with %d of %d partitions held", seed, d.State, total, parts)
		}
	}
}

// TestConsumerTopicChangesMoveTheEpoch: a subscribed topic created, or
// grown, after the member joined is assigned at its next heartbeat under
// a new group epoch; a topic nobody subscribes to changes nothing.
func TestConsumerTopicChangesMoveTheEpoch(t *testing.T) {
	c, _ := newTestCoordinator(t)
	topics := map[string]TopicInfo{"t": {ID: [16]byte{7}, Partitions: 1}}
	c.Topics = func() map[string]TopicInfo { return topics }
	join := hb("A", 0)
	join.SubscribedTopics = []string{"t", "u"}
	a := mustHB(t, c, join)
	if len(held(a)) != 1 || a.MemberEpoch != 1 {
		t.Fatalf("join: %+v", a)
	}
	topics = map[string]TopicInfo{"t": {ID: [16]byte{7}, Partitions: 1}, "other": {ID: [16]byte{9}, Partitions: 3}}
	if r := mustHB(t, c, hb("A", 1, 0)); r.MemberEpoch != 1 {
		t.Fatalf("an unsubscribed topic moved the epoch: %+v", r)
	}
	topics = map[string]TopicInfo{"t": {ID: [16]byte{7}, Partitions: 2}, "u": {ID: [16]byte{8}, Partitions: 2}}
	r := mustHB(t, c, hb("A", 1, 0))
	total := 0
	for _, tp := range r.Assignment {
		total += len(tp.Partitions)
	}
	if r.MemberEpoch != 2 || total != 4 {
		t.Fatalf("after t grew and u appeared: epoch %d, %d partitions (%+v), want epoch 2 and 4", r.MemberEpoch, total, r.Assignment)
	}
}
