package group

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// clock is a manual clock for driving timeouts.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestCoordinator(t *testing.T) (*Coordinator, *clock) {
	t.Helper()
	store, err := OpenOffsetStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clk := &clock{t: time.Unix(1_000_000, 0)}
	return NewCoordinator(store, clk.now), clk
}

func joinReq(member string) JoinRequest {
	return JoinRequest{Group: "g", MemberID: member, ClientID: "c", ProtocolType: "consumer",
		Protocols: []Protocol{{Name: "range", Metadata: []byte("m-" + member)}, {Name: "roundrobin"}},
		Session:   10 * time.Second, Rebalance: 30 * time.Second}
}

// ready returns the value on ch if there is one now.
func ready[T any](ch <-chan T) (T, bool) {
	select {
	case v := <-ch:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

func mustJoin(t *testing.T, ch <-chan JoinResult) JoinResult {
	t.Helper()
	r, ok := ready(ch)
	if !ok {
		t.Fatal("join is still waiting")
	}
	if r.Err != nil {
		t.Fatalf("join: %v", r.Err)
	}
	return r
}

func TestSingleMemberLifecycle(t *testing.T) {
	c, _ := newTestCoordinator(t)
	j := mustJoin(t, c.Join(joinReq("")))
	if j.Generation != 1 || j.LeaderID != j.MemberID || j.Protocol != "range" || len(j.Members) != 1 {
		t.Fatalf("first join: %+v", j)
	}
	if string(j.Members[0].Metadata) != "m-" {
		t.Fatalf("leader sees metadata %q", j.Members[0].Metadata)
	}
	if d, _ := c.Describe("g"); d.State != CompletingRebalance {
		t.Fatalf("state %s, want CompletingRebalance", d.State)
	}
	s, ok := ready(c.Sync(SyncRequest{Group: "g", MemberID: j.MemberID, Generation: 1,
		Assignments: map[string][]byte{j.MemberID: []byte("all")}}))
	if !ok || s.Err != nil || string(s.Assignment) != "all" {
		t.Fatalf("sync: %+v %v", s, ok)
	}
	if err := c.Heartbeat("g", j.MemberID, "", 1); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if err := c.Heartbeat("g", j.MemberID, "", 0); err != kerr.IllegalGeneration {
		t.Fatalf("stale generation heartbeat: %v", err)
	}
	if err := c.Heartbeat("g", "nobody", "", 1); err != kerr.UnknownMemberID {
		t.Fatalf("unknown member heartbeat: %v", err)
	}
	if errs := c.Leave("g", []string{j.MemberID}, nil); errs[0] != nil {
		t.Fatalf("leave: %v", errs[0])
	}
	if d, _ := c.Describe("g"); d.State != Empty || len(d.Members) != 0 {
		t.Fatalf("after leave: %+v", d)
	}
}

func TestSecondMemberTriggersRebalance(t *testing.T) {
	c, _ := newTestCoordinator(t)
	a := mustJoin(t, c.Join(joinReq("")))
	c.Sync(SyncRequest{Group: "g", MemberID: a.MemberID, Generation: 1, Assignments: map[string][]byte{a.MemberID: []byte("0-5")}})

	bCh := c.Join(joinReq(""))
	if _, ok := ready(bCh); ok {
		t.Fatal("the new member must wait for the existing member to rejoin")
	}
	if err := c.Heartbeat("g", a.MemberID, "", 1); err != kerr.RebalanceInProgress {
		t.Fatalf("existing member's heartbeat = %v, want REBALANCE_IN_PROGRESS", err)
	}
	a2 := mustJoin(t, c.Join(joinReq(a.MemberID)))
	b := mustJoin(t, bCh)
	if a2.Generation != 2 || b.Generation != 2 {
		t.Fatalf("generations %d %d, want 2", a2.Generation, b.Generation)
	}
	if a2.LeaderID != a.MemberID || len(a2.Members) != 2 || len(b.Members) != 0 {
		t.Fatalf("leader must stay %s and alone see members: %+v / %+v", a.MemberID, a2, b)
	}
	// The follower waits for the leader's assignments.
	bSync := c.Sync(SyncRequest{Group: "g", MemberID: b.MemberID, Generation: 2})
	if _, ok := ready(bSync); ok {
		t.Fatal("follower sync returned before the leader's")
	}
	aSync := c.Sync(SyncRequest{Group: "g", MemberID: a.MemberID, Generation: 2,
		Assignments: map[string][]byte{a.MemberID: []byte("0-2"), b.MemberID: []byte("3-5")}})
	if s, _ := ready(aSync); string(s.Assignment) != "0-2" {
		t.Fatalf("leader assignment %q", s.Assignment)
	}
	if s, _ := ready(bSync); string(s.Assignment) != "3-5" {
		t.Fatalf("follower assignment %q", s.Assignment)
	}
}

func TestSessionExpiryHandsPartitionsToOthers(t *testing.T) {
	c, clk := newTestCoordinator(t)
	a := mustJoin(t, c.Join(joinReq("")))
	bCh := c.Join(joinReq(""))
	mustJoin(t, c.Join(joinReq(a.MemberID)))
	b := mustJoin(t, bCh)
	c.Sync(SyncRequest{Group: "g", MemberID: b.MemberID, Generation: 2})
	c.Sync(SyncRequest{Group: "g", MemberID: a.MemberID, Generation: 2, Assignments: map[string][]byte{}})

	// b keeps heartbeating, a goes silent.
	for range 11 {
		clk.advance(time.Second)
		if err := c.Heartbeat("g", b.MemberID, "", 2); err != nil {
			t.Fatalf("b heartbeat: %v", err)
		}
		c.Tick()
	}
	if err := c.Heartbeat("g", b.MemberID, "", 2); err != kerr.RebalanceInProgress {
		t.Fatalf("after a's session expired b must be told to rejoin, got %v", err)
	}
	b2 := mustJoin(t, c.Join(joinReq(b.MemberID)))
	if b2.Generation != 3 || b2.LeaderID != b.MemberID || len(b2.Members) != 1 {
		t.Fatalf("b alone must lead generation 3: %+v", b2)
	}
	if err := c.Heartbeat("g", a.MemberID, "", 2); err != kerr.UnknownMemberID {
		t.Fatalf("expired member: %v", err)
	}
}

func TestRebalanceDeadlineDropsMembersThatDoNotRejoin(t *testing.T) {
	c, clk := newTestCoordinator(t)
	a := mustJoin(t, c.Join(joinReq("")))
	c.Sync(SyncRequest{Group: "g", MemberID: a.MemberID, Generation: 1, Assignments: map[string][]byte{}})
	bCh := c.Join(joinReq(""))
	// a keeps heartbeating (it is alive) but never rejoins.
	for range 31 {
		clk.advance(time.Second)
		c.Heartbeat("g", a.MemberID, "", 1)
		c.Tick()
	}
	b := mustJoin(t, bCh)
	if b.Generation != 2 || len(b.Members) != 1 || b.LeaderID != b.MemberID {
		t.Fatalf("b must complete the join alone at the deadline: %+v", b)
	}
}

func TestMemberIDRequired(t *testing.T) {
	c, _ := newTestCoordinator(t)
	req := joinReq("")
	req.RequireKnownMemberID = true
	r, _ := ready(c.Join(req))
	if r.Err != kerr.MemberIDRequired || r.MemberID == "" {
		t.Fatalf("v4 first join: %+v", r)
	}
	req.MemberID = r.MemberID
	j := mustJoin(t, c.Join(req))
	if j.MemberID != r.MemberID {
		t.Fatalf("member id changed: %s → %s", r.MemberID, j.MemberID)
	}
	if r, _ := ready(c.Join(joinReq("made-up"))); r.Err != kerr.UnknownMemberID {
		t.Fatalf("unknown member id: %+v", r)
	}
}

func TestProtocolAgreement(t *testing.T) {
	c, _ := newTestCoordinator(t)
	mustJoin(t, c.Join(joinReq("")))
	bad := joinReq("")
	bad.Protocols = []Protocol{{Name: "cooperative-sticky"}}
	if r, _ := ready(c.Join(bad)); r.Err != kerr.InconsistentGroupProtocol {
		t.Fatalf("no common protocol: %+v", r)
	}
	bad = joinReq("")
	bad.Session = time.Millisecond
	if r, _ := ready(c.Join(bad)); r.Err != kerr.InvalidSessionTimeout {
		t.Fatalf("tiny session: %+v", r)
	}
}

func TestStaticMemberRestartFencesOldID(t *testing.T) {
	c, _ := newTestCoordinator(t)
	req := joinReq("")
	req.InstanceID = "host-1"
	a := mustJoin(t, c.Join(req))
	c.Sync(SyncRequest{Group: "g", MemberID: a.MemberID, InstanceID: "host-1", Generation: 1, Assignments: map[string][]byte{}})
	a2 := mustJoin(t, c.Join(req)) // restarted: no member id, same instance
	if a2.MemberID == a.MemberID {
		t.Fatal("a restarted static member gets a new member id")
	}
	if err := c.Heartbeat("g", a.MemberID, "host-1", 1); err != kerr.FencedInstanceID {
		t.Fatalf("old incarnation: %v, want FENCED_INSTANCE_ID", err)
	}
}

func TestCommitRules(t *testing.T) {
	c, _ := newTestCoordinator(t)
	tp := TopicPartition{"t", 0}
	// Outside group management, on an empty group: allowed (how Sluice
	// echoes positions for lag tools).
	if err := c.Commit(CommitRequest{Group: "g", Generation: -1, Offsets: []Offset{{TopicPartition: tp, Offset: 5, Metadata: "m"}}}); err != nil {
		t.Fatalf("simple commit: %v", err)
	}
	a := mustJoin(t, c.Join(joinReq("")))
	if err := c.Commit(CommitRequest{Group: "g", MemberID: a.MemberID, Generation: 1, Offsets: []Offset{{TopicPartition: tp, Offset: 6}}}); err != kerr.RebalanceInProgress {
		t.Fatalf("commit while awaiting sync: %v", err)
	}
	c.Sync(SyncRequest{Group: "g", MemberID: a.MemberID, Generation: 1, Assignments: map[string][]byte{}})
	if err := c.Commit(CommitRequest{Group: "g", Generation: -1, Offsets: []Offset{{TopicPartition: tp, Offset: 1}}}); err != kerr.UnknownMemberID {
		t.Fatalf("simple commit to an active group: %v", err)
	}
	if err := c.Commit(CommitRequest{Group: "g", MemberID: a.MemberID, Generation: 0, Offsets: []Offset{{TopicPartition: tp, Offset: 1}}}); err != kerr.IllegalGeneration {
		t.Fatalf("stale generation: %v", err)
	}
	if err := c.Commit(CommitRequest{Group: "g", MemberID: a.MemberID, Generation: 1, Offsets: []Offset{{TopicPartition: tp, Offset: 7}}}); err != nil {
		t.Fatalf("member commit: %v", err)
	}
	got := c.Fetch("g", []TopicPartition{tp, {"t", 1}})
	if got[0].Offset != 7 || got[1].Offset != -1 {
		t.Fatalf("fetch: %+v", got)
	}
	if err := c.Delete("g"); err != kerr.NonEmptyGroup {
		t.Fatalf("delete active group: %v", err)
	}
	c.Leave("g", []string{a.MemberID}, nil)
	if err := c.Delete("g"); err != nil {
		t.Fatalf("delete empty group: %v", err)
	}
	if got := c.Fetch("g", nil); len(got) != 0 {
		t.Fatalf("offsets survive delete: %+v", got)
	}
}

func TestOffsetsSurviveReopenAndTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenOffsetStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Commit("g", []Offset{{TopicPartition: TopicPartition{"t", int32(i % 3)}, Offset: int64(i), Metadata: "meta"}})
	}
	s.Commit("gone", []Offset{{TopicPartition: TopicPartition{"t", 0}, Offset: 1}})
	s.DeleteGroup("gone")
	s.Close()
	// A crash mid-append leaves a torn entry at the end.
	f, _ := os.OpenFile(filepath.Join(dir, "offsets.log"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 0, 50, 1, 2, 3, 4, '{', '"'})
	f.Close()

	s, err = OpenOffsetStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := s.Fetch("g", nil)
	if len(got) != 3 || got[0].Offset != 9 || got[1].Offset != 7 || got[2].Offset != 8 || got[0].Metadata != "meta" {
		t.Fatalf("after reopen: %+v", got)
	}
	if g := s.Groups(); len(g) != 1 {
		t.Fatalf("deleted group came back: %v", g)
	}
	// Appends after recovery land after the cut.
	s.Commit("g", []Offset{{TopicPartition: TopicPartition{"t", 0}, Offset: 42}})
	s.Close()
	s, _ = OpenOffsetStore(dir)
	if got := s.Fetch("g", []TopicPartition{{"t", 0}}); got[0].Offset != 42 {
		t.Fatalf("commit after recovery lost: %+v", got)
	}
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenOffsetStore(dir)
	for i := range compactMinEntries + 10 {
		if err := s.Commit("g", []Offset{{TopicPartition: TopicPartition{"t", 0}, Offset: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := os.Stat(filepath.Join(dir, "offsets.log"))
	if st.Size() > 10_000 {
		t.Fatalf("log not compacted: %d bytes", st.Size())
	}
	s.Close()
	s, _ = OpenOffsetStore(dir)
	defer s.Close()
	if got := s.Fetch("g", nil); len(got) != 1 || got[0].Offset != compactMinEntries+9 {
		t.Fatalf("after compaction: %+v", got)
	}
}
