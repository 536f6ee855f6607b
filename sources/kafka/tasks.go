package kafka

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/flock"
)

// Tasks: the processes running one direct-mode pipeline split its tasks
// (partition numbers) through a consumer group on the source cluster
// (docs/ARCHITECTURE.md §11). Group is the engine.Assigner: a group member
// that only takes part in assignment; the Direct source reads the
// partitions of the tasks it is given, at the positions the sink holds.

// releaseTimeout bounds how long a revocation waits for the engine to let
// go of the revoked tasks (finish the batch in flight). Past it the
// rebalance goes on: the sink still fences the late commit, but the
// revoke was not clean. Below franz-go's default rebalance timeout (60s).
const releaseTimeout = 45 * time.Second

// TaskBalancerName is the group protocol the processes of a pipeline agree
// on: cooperative, sticky, and co-partitioned (partition p of every topic
// goes to the same member, as task p).
const TaskBalancerName = "sluice-tasks"

// GroupConfig configures a pipeline's task group.
type GroupConfig struct {
	Conn  Connection
	Group string // the consumer group; the pipeline name by default
	// SessionTimeout is how long the group waits for a silent member
	// before moving its tasks; 0 = franz-go's default (45s).
	SessionTimeout time.Duration
	// MemberDir keeps this process's identity in the group (static
	// membership, KIP-345): a process restarted after a crash takes its
	// tasks back at once instead of after the session timeout. The
	// identity file is locked while the group is joined, so two live
	// processes cannot share it. "" = a new identity at every join.
	MemberDir string
	Topics    []string
	Pattern   string
	Pipeline  string
	Logger    *slog.Logger
}

// Group is one process's membership in its pipeline's task group. It
// implements engine.Assigner.
type Group struct {
	cfg GroupConfig
	log *slog.Logger
	cl  *kgo.Client

	mu       sync.Mutex
	owned    map[string][]int32 // what the group gave this member, by topic
	returned []engine.Task      // what Assigned last returned
	told     bool               // has an assignment arrived since the member joined
	// changed is closed once owned differs from returned; Assigned makes
	// a new one.
	changed chan struct{}
	// released is closed by every Assigned call: the engine let go of
	// what is no longer assigned. A revocation waits for it.
	released chan struct{}
	// ready is closed by the first assignment.
	ready chan struct{}
	// closing: Close was called; revocations do not wait.
	closing bool

	instanceID string   // static membership; "" = dynamic
	idFile     *os.File // holds the identity's lock while joined

	// sinkOffsets: the sink commits the group's offsets in its own
	// transactions (the kafka sink on this cluster); Commit echoes
	// nothing, so it cannot overwrite them.
	sinkOffsets bool
}

// JoinGroup joins the task group of a pipeline; Assigned waits for its
// first assignment.
func JoinGroup(cfg GroupConfig) (*Group, error) {
	if cfg.Group == "" {
		cfg.Group = cfg.Pipeline
	}
	g := &Group{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default()).With("pipeline", cfg.Pipeline, "group", cfg.Group),
		changed: make(chan struct{}), released: make(chan struct{}), ready: make(chan struct{})}
	opts, err := cfg.Conn.kgoOpts("sluice-"+cfg.Pipeline, g.log)
	if err != nil {
		return nil, err
	}
	if cfg.MemberDir != "" {
		id, f, err := memberIdentity(cfg.MemberDir, cfg.Pipeline)
		if err != nil {
			return nil, err
		}
		g.instanceID, g.idFile = "sluice-"+cfg.Pipeline+"-"+id, f
		opts = append(opts, kgo.InstanceID(g.instanceID))
	}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.Balancers(taskBalancer{}),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(g.assigned),
		kgo.OnPartitionsRevoked(g.revoked),
		kgo.OnPartitionsLost(g.lost),
		// The member only takes part in assignment; Direct fetches.
		// Assigned partitions are paused at once; what slips through
		// before is one small fetch, never polled.
		kgo.FetchMaxBytes(1),
		kgo.FetchMaxPartitionBytes(1),
	)
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	if cfg.Pattern != "" {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics("^(?:"+cfg.Pattern+")$"))
	} else {
		opts = append(opts, kgo.ConsumeTopics(cfg.Topics...))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		if g.idFile != nil {
			g.idFile.Close()
		}
		return nil, fmt.Errorf("kafka group %s: %w", cfg.Group, err)
	}
	g.cl = cl
	return g, nil
}

// memberIdentity returns the process's identity in pipeline's group,
// made once and kept in dir, and the open file holding its lock.
func memberIdentity(dir, pipeline string) (string, *os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("data directory: %w; pass --data with a writable directory", err)
	}
	path := filepath.Join(dir, pipeline+".member")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", nil, fmt.Errorf("group identity: %w", err)
	}
	ok, err := flock.TryLock(f)
	if err == nil && !ok {
		err = fmt.Errorf("another process of pipeline %s uses this data directory (%s is locked); give each process its own --data directory", pipeline, path)
	}
	var id []byte
	if err == nil {
		id, err = io.ReadAll(f)
	}
	if err == nil && len(id) == 0 {
		var b [8]byte
		rand.Read(b[:])
		id = []byte(hex.EncodeToString(b[:]))
		if _, err = f.Write(id); err == nil {
			err = f.Sync()
		}
	}
	if err != nil {
		f.Close()
		return "", nil, err
	}
	return string(bytes.TrimSpace(id)), f, nil
}

// Assigned implements engine.Assigner.
func (g *Group) Assigned(ctx context.Context) ([]engine.Task, error) {
	select {
	case <-g.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.returned = tasksOf(g.owned)
	g.changed = make(chan struct{})
	close(g.released)
	g.released = make(chan struct{})
	return slices.Clone(g.returned), nil
}

// Changed implements engine.Assigner.
func (g *Group) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// Owned returns the partitions the group gave this member now.
func (g *Group) Owned() map[string][]int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string][]int32, len(g.owned))
	for t, ps := range g.owned {
		out[t] = slices.Clone(ps)
	}
	return out
}

// Name returns the consumer group's id.
func (g *Group) Name() string { return g.cfg.Group }

// Identity returns the process's stable identity in the group, kept in
// the member directory (it survives restarts), or "" when the group has
// none (GroupConfig.MemberDir unset).
func (g *Group) Identity() string { return g.instanceID }

// Member returns this member's id, generation (-1 before it joined) and
// instance id ("" for a dynamic member), as a transactional offset commit
// names them (KIP-447).
func (g *Group) Member() (memberID string, generation int32, instanceID string) {
	id, gen := g.cl.GroupMetadata()
	return id, gen, g.instanceID
}

// Topics returns the topics the group reads: those its pattern matches
// now, or the listed ones.
func (g *Group) Topics() []string {
	if ts := g.cl.GetConsumeTopics(); len(ts) > 0 {
		return ts
	}
	return slices.Clone(g.cfg.Topics)
}

// SinkCommitsOffsets says the sink commits the group's offsets itself,
// inside its transactions (the kafka sink on the source's cluster): from
// then on Commit does nothing, so the echo never overwrites them.
func (g *Group) SinkCommitsOffsets() {
	g.mu.Lock()
	g.sinkOffsets = true
	g.mu.Unlock()
}

// Commit records positions as the group's offsets, as this member (lag
// tools read them; the sink holds the positions that count). It does
// nothing once SinkCommitsOffsets was called.
func (g *Group) Commit(ctx context.Context, at engine.Positions) error {
	g.mu.Lock()
	off := g.sinkOffsets
	g.mu.Unlock()
	if off {
		return nil
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for tp, off := range at {
		if offsets[tp.Topic] == nil {
			offsets[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	var cerr error
	g.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("echo positions to group %s: %w", g.cfg.Group, cerr)
	}
	return nil
}

// Close leaves the group, so the other processes take its tasks over at
// once instead of after the session timeout. The pipeline must have
// stopped: leaving revokes every task without waiting for a release.
func (g *Group) Close() error {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.cl.Close()
	if g.instanceID == "" {
		return nil
	}
	// A static member does not leave when its client closes (so that a
	// restart finds its tasks waiting): leave on its behalf, since this
	// is a stop, not a restart.
	defer g.idFile.Close()
	return g.leave()
}

// leaveTimeout bounds the LeaveGroup of a stopping static member.
const leaveTimeout = 5 * time.Second

func (g *Group) leave() error {
	opts, err := g.cfg.Conn.kgoOpts("sluice-"+g.cfg.Pipeline, g.log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = g.cfg.Group
	m := kmsg.NewLeaveGroupRequestMember()
	m.InstanceID = kmsg.StringPtr(g.instanceID)
	req.Members = append(req.Members, m)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		g.log.Warn("leaving the task group failed; its tasks move once the session times out", "err", err)
	}
	return nil
}

func (g *Group) assigned(_ context.Context, cl *kgo.Client, added map[string][]int32) {
	cl.PauseFetchPartitions(added)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.owned == nil {
		g.owned = map[string][]int32{}
	}
	for t, ps := range added {
		g.owned[t] = sortedUnion(g.owned[t], ps)
	}
	if len(added) > 0 { // a cooperative rebalance often adds nothing
		g.log.Info("tasks assigned", "tasks", tasksOf(added), "partitions", added)
	}
	g.noteLocked()
	if !g.told {
		g.told = true
		close(g.ready)
	}
}

// revoked takes partitions away and waits until the engine has let go of
// them: the batch in flight committed or aborted before another member
// may start on the tasks.
func (g *Group) revoked(ctx context.Context, _ *kgo.Client, gone map[string][]int32) {
	if len(gone) == 0 {
		return // franz-go calls at the end of every session
	}
	g.mu.Lock()
	g.removeLocked(gone)
	g.log.Info("tasks revoked", "tasks", tasksOf(gone), "partitions", gone)
	released := g.released
	waits := g.noteLocked() && !g.closing
	g.mu.Unlock()
	if !waits {
		return
	}
	t := time.NewTimer(releaseTimeout)
	defer t.Stop()
	select {
	case <-released:
	case <-ctx.Done():
	case <-t.C:
		g.log.Warn("revoked tasks were not released in time; the sink fences whatever the batch in flight commits for them",
			"tasks", tasksOf(gone), "waited", releaseTimeout)
	}
}

// lost takes partitions away without waiting: the session ended, another
// member may already hold them.
func (g *Group) lost(_ context.Context, _ *kgo.Client, gone map[string][]int32) {
	if len(gone) == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removeLocked(gone)
	g.log.Warn("tasks lost (the group session ended); the sink fences late commits", "tasks", tasksOf(gone))
	g.noteLocked()
}

func (g *Group) removeLocked(gone map[string][]int32) {
	for t, ps := range gone {
		g.owned[t] = slices.DeleteFunc(g.owned[t], func(p int32) bool { return slices.Contains(ps, p) })
		if len(g.owned[t]) == 0 {
			delete(g.owned, t)
		}
	}
}

// noteLocked closes changed if the tasks differ from what Assigned last
// returned, and reports whether they do.
func (g *Group) noteLocked() bool {
	if slices.Equal(tasksOf(g.owned), g.returned) {
		return false
	}
	select {
	case <-g.changed:
	default:
		close(g.changed)
	}
	return true
}

// tasksOf returns the partition numbers in parts, sorted.
func tasksOf(parts map[string][]int32) []engine.Task {
	var out []engine.Task
	for _, ps := range parts {
		for _, p := range ps {
			out = append(out, engine.Task(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedUnion(a, b []int32) []int32 {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// taskBalancer is the group protocol of a pipeline's processes. Members
// are balanced by task: task p is partition p of every subscribed topic,
// and goes to one member whole, so co-partitioned topics stay together.
// It is sticky (a task stays with the member that owns it unless the
// balance needs it elsewhere) and cooperative (a task that moves is first
// revoked, then assigned in the rebalance that follows).
type taskBalancer struct{}

func (taskBalancer) ProtocolName() string { return TaskBalancerName }
func (taskBalancer) IsCooperative() bool  { return true }

func (taskBalancer) JoinGroupMetadata(interests []string, current map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests
	meta.Generation = generation
	for _, topic := range slices.Sorted(maps.Keys(current)) {
		owned := kmsg.NewConsumerMemberMetadataOwnedPartition()
		owned.Topic, owned.Partitions = topic, current[topic]
		meta.OwnedPartitions = append(meta.OwnedPartitions, owned)
	}
	return meta.AppendTo(nil)
}

func (taskBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	return kgo.ParseConsumerSyncAssignment(assignment)
}

func (b taskBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

// Balance implements kgo.ConsumerBalancerBalance.
func (taskBalancer) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	var members []string
	owner := map[engine.Task]string{}
	ownerGen := map[engine.Task]int32{}
	var tasks int32
	for _, n := range topics {
		tasks = max(tasks, n)
	}
	cb.EachMember(func(m *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		members = append(members, m.MemberID)
		for _, o := range meta.OwnedPartitions {
			for _, p := range o.Partitions {
				t := engine.Task(p)
				if p >= tasks {
					continue
				}
				// A stale claim loses to a newer generation's.
				if g, ok := ownerGen[t]; !ok || meta.Generation > g {
					owner[t], ownerGen[t] = m.MemberID, meta.Generation
				}
			}
		}
	})
	byMember := balanceTasks(members, int(tasks), owner)
	memberAt := map[string]*kmsg.JoinGroupResponseMember{}
	for _, m := range cb.Members() {
		memberAt[m.MemberID] = &m
	}
	plan := cb.NewPlan()
	for id, ts := range byMember {
		for _, t := range ts {
			for topic, n := range topics {
				if int32(t) < n {
					plan.AddPartition(memberAt[id], topic, int32(t))
				}
			}
		}
	}
	plan.AdjustCooperative(cb)
	return plan
}

// balanceTasks spreads tasks 0..n-1 over members: each gets n/len(members)
// or one more, keeping as many as it can of those owner says it has.
func balanceTasks(members []string, n int, owner map[engine.Task]string) map[string][]engine.Task {
	out := map[string][]engine.Task{}
	if len(members) == 0 {
		return out
	}
	slices.Sort(members)
	for t := range engine.Task(n) {
		if m, ok := owner[t]; ok && slices.Contains(members, m) {
			out[m] = append(out[m], t)
		}
	}
	// Those holding the most get the larger quotas: fewer moves.
	order := slices.Clone(members)
	slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(len(out[b]), len(out[a])) })
	quota := map[string]int{}
	for i, m := range order {
		quota[m] = n / len(members)
		if i < n%len(members) {
			quota[m]++
		}
	}
	var free []engine.Task
	for _, m := range members {
		if extra := len(out[m]) - quota[m]; extra > 0 {
			free = append(free, out[m][quota[m]:]...)
			out[m] = out[m][:quota[m]]
		}
	}
	owned := map[engine.Task]bool{}
	for _, ts := range out {
		for _, t := range ts {
			owned[t] = true
		}
	}
	for t := range engine.Task(n) {
		if !owned[t] && !slices.Contains(free, t) {
			free = append(free, t)
		}
	}
	slices.Sort(free)
	for _, m := range members {
		for len(out[m]) < quota[m] && len(free) > 0 {
			out[m] = append(out[m], free[0])
			free = free[1:]
		}
	}
	return out
}

// errNoGroup is returned by OpenTasks of a Direct made without a Group.
var errNoGroup = errors.New("kafka: a pipeline split into tasks needs its group (DirectConfig.Tasks)")
