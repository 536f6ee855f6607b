package group

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Limits on what clients may ask for. Kafka's defaults are 6s and 30m for
// sessions; the lower bound here is 1s so tests can expire members quickly.
const (
	MinSessionTimeout = time.Second
	MaxSessionTimeout = 30 * time.Minute
	// MaxMembers bounds one group, like Kafka's group.max.size (unbounded
	// there by default): each member holds its metadata in memory.
	MaxMembers = 10000
	// MaxMetadataBytes bounds one member's protocol metadata and assignment.
	MaxMetadataBytes = 1 << 20
)

// State is a group's state, named as Kafka names them.
type State string

const (
	Empty               State = "Empty"
	PreparingRebalance  State = "PreparingRebalance"
	CompletingRebalance State = "CompletingRebalance"
	Stable              State = "Stable"
	Dead                State = "Dead"
)

// Protocol is one assignment protocol a member supports, with its metadata.
type Protocol struct {
	Name     string
	Metadata []byte
}

// JoinRequest is a JoinGroup request.
type JoinRequest struct {
	Group        string
	MemberID     string // "" on a first join
	InstanceID   string // static membership; "" = dynamic
	ClientID     string
	ClientHost   string
	ProtocolType string
	Protocols    []Protocol
	Session      time.Duration
	Rebalance    time.Duration
	// RequireKnownMemberID: JoinGroup v4+ first hands out a member id with
	// MEMBER_ID_REQUIRED and expects the client to join again with it.
	RequireKnownMemberID bool
}

// Member describes a group member, as JoinGroup (to the leader) and
// DescribeGroups report it.
type Member struct {
	ID         string
	InstanceID string
	ClientID   string
	ClientHost string
	Metadata   []byte // for the chosen protocol
	Assignment []byte
}

// JoinResult is a JoinGroup response.
type JoinResult struct {
	Err          *kerr.Error // nil = success
	Generation   int32
	ProtocolType string
	Protocol     string
	LeaderID     string
	MemberID     string
	Members      []Member // only for the leader
}

// SyncRequest is a SyncGroup request.
type SyncRequest struct {
	Group        string
	MemberID     string
	InstanceID   string
	Generation   int32
	ProtocolType string // v5+, "" = not checked
	Protocol     string // v5+, "" = not checked
	Assignments  map[string][]byte
}

// SyncResult is a SyncGroup response.
type SyncResult struct {
	Err          *kerr.Error
	ProtocolType string
	Protocol     string
	Assignment   []byte
}

// Description is a DescribeGroups entry.
type Description struct {
	Group        string
	State        State
	ProtocolType string
	Protocol     string
	Generation   int32
	Members      []Member
	// Type is "classic" or "consumer" (KIP-848), as ListGroups v5 names
	// them; set by List.
	Type string
}

type member struct {
	Member
	protocols []Protocol
	session   time.Duration
	rebalance time.Duration
	lastSeen  time.Time
	join      chan JoinResult // set while waiting in a join
	sync      chan SyncResult // set while waiting for the leader's assignments
}

type group struct {
	name         string
	state        State
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*member
	pending      map[string]time.Time // member ids handed out with MEMBER_ID_REQUIRED
	deadline     time.Time            // of the join or sync phase in progress
	// consumer is set while the group runs the consumer protocol
	// (KIP-848, consumer.go); the classic fields above are then unused.
	consumer *cgroup
}

// empty says whether no member, of either protocol, is in the group.
func (g *group) empty() bool {
	return len(g.members) == 0 && (g.consumer == nil || len(g.consumer.members) == 0)
}

// toClassic turns an empty consumer-protocol group back into a classic
// one, as Kafka converts an empty group to the protocol of a joining
// member.
func (g *group) toClassic() {
	if g.consumer != nil && len(g.consumer.members) == 0 {
		g.consumer = nil
		g.state, g.protocolType, g.protocol = Empty, "", ""
	}
}

// Coordinator owns every group of one broker.
type Coordinator struct {
	mu      sync.Mutex
	groups  map[string]*group
	offsets *OffsetStore
	now     func() time.Time

	// OnRebalance, if set, is called (under the lock) each time a group
	// completes a join phase or computes a new target assignment; for
	// metrics.
	OnRebalance func(group string)

	// Topics, if set, returns the broker's topics: consumer-protocol
	// groups assign their partitions. It is called without the
	// coordinator's lock held.
	Topics func() map[string]TopicInfo
	// ConsumerSessionTimeout and ConsumerHeartbeatInterval are Kafka's
	// group.consumer.session.timeout.ms and heartbeat.interval.ms
	// (defaults DefaultConsumerSessionTimeout, ...HeartbeatInterval). Set
	// them before serving.
	ConsumerSessionTimeout    time.Duration
	ConsumerHeartbeatInterval time.Duration
}

// NewCoordinator returns a coordinator whose committed offsets live in
// store; now is the clock (time.Now outside tests).
func NewCoordinator(store *OffsetStore, now func() time.Time) *Coordinator {
	if now == nil {
		now = time.Now
	}
	c := &Coordinator{groups: map[string]*group{}, offsets: store, now: now}
	for _, g := range store.Groups() {
		c.groups[g] = newGroup(g)
	}
	return c
}

func newGroup(name string) *group {
	return &group{name: name, state: Empty, members: map[string]*member{}, pending: map[string]time.Time{}}
}

func (c *Coordinator) getOrCreate(name string) *group {
	g := c.groups[name]
	if g == nil {
		g = newGroup(name)
		c.groups[name] = g
	}
	return g
}

func newMemberID(clientID string) string {
	var b [16]byte
	rand.Read(b[:])
	if clientID == "" {
		clientID = "member"
	}
	return clientID + "-" + hex.EncodeToString(b[:])
}

func joinError(err *kerr.Error, memberID string) chan JoinResult {
	ch := make(chan JoinResult, 1)
	ch <- JoinResult{Err: err, MemberID: memberID, Generation: -1}
	return ch
}

func syncError(err *kerr.Error) chan SyncResult {
	ch := make(chan SyncResult, 1)
	ch <- SyncResult{Err: err}
	return ch
}

// Join handles a JoinGroup request. The result arrives on the returned
// channel once the join phase completes: when every known member has
// rejoined, or at the rebalance deadline (see Tick).
func (c *Coordinator) Join(req JoinRequest) <-chan JoinResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	switch {
	case req.Group == "":
		return joinError(kerr.InvalidGroupID, req.MemberID)
	case req.Session < MinSessionTimeout || req.Session > MaxSessionTimeout:
		return joinError(kerr.InvalidSessionTimeout, req.MemberID)
	case req.ProtocolType == "" || len(req.Protocols) == 0:
		return joinError(kerr.InconsistentGroupProtocol, req.MemberID)
	}
	for _, p := range req.Protocols {
		if len(p.Metadata) > MaxMetadataBytes {
			return joinError(kerr.InconsistentGroupProtocol, req.MemberID)
		}
	}
	if req.Rebalance <= 0 {
		req.Rebalance = req.Session
	}
	g := c.getOrCreate(req.Group)
	if g.state == Dead {
		return joinError(kerr.CoordinatorNotAvailable, req.MemberID)
	}
	if g.consumer != nil {
		// Kafka with group.consumer.migration.policy disabled: a classic
		// member cannot join a consumer-protocol group that has members;
		// an empty one becomes classic.
		if len(g.consumer.members) > 0 {
			return joinError(kerr.InconsistentGroupProtocol, req.MemberID)
		}
		g.toClassic()
	}
	if len(g.members) > 0 {
		if req.ProtocolType != g.protocolType || !g.supportsAll(req.Protocols) {
			return joinError(kerr.InconsistentGroupProtocol, req.MemberID)
		}
	}

	m := g.members[req.MemberID]
	switch {
	case req.InstanceID != "":
		// Static membership: the instance id names the member; a new join
		// under it replaces (fences) the old member id.
		old := g.byInstance(req.InstanceID)
		if req.MemberID != "" && old != nil && old.ID != req.MemberID {
			return joinError(kerr.FencedInstanceID, req.MemberID)
		}
		if old != nil {
			m = old
		}
		if m == nil && req.MemberID != "" {
			return joinError(kerr.UnknownMemberID, req.MemberID)
		}
		if m != nil && req.MemberID == "" {
			// A restarted static member: hand it a fresh id, fence the old.
			c.replaceID(g, m, newMemberID(req.ClientID))
		}
	case req.MemberID == "":
		id := newMemberID(req.ClientID)
		if req.RequireKnownMemberID {
			g.pending[id] = now.Add(req.Session)
			return joinError(kerr.MemberIDRequired, id)
		}
		req.MemberID = id
	case m == nil:
		if _, ok := g.pending[req.MemberID]; !ok {
			return joinError(kerr.UnknownMemberID, req.MemberID)
		}
		delete(g.pending, req.MemberID)
	}
	if m == nil {
		if len(g.members) >= MaxMembers {
			return joinError(kerr.GroupMaxSizeReached, req.MemberID)
		}
		id := req.MemberID
		if id == "" {
			id = newMemberID(req.ClientID)
		}
		m = &member{Member: Member{ID: id, InstanceID: req.InstanceID}}
		g.members[id] = m
		if g.leader == "" {
			g.leader = id
		}
	}
	if m.join != nil {
		// A duplicate join while one is waiting: the older waits no more.
		m.join <- JoinResult{Err: kerr.RebalanceInProgress, MemberID: m.ID, Generation: -1}
	}
	m.ClientID, m.ClientHost = req.ClientID, req.ClientHost
	m.protocols = slices.Clone(req.Protocols)
	m.session, m.rebalance = req.Session, req.Rebalance
	m.lastSeen = now
	m.join = make(chan JoinResult, 1)
	if g.protocolType == "" {
		g.protocolType = req.ProtocolType
	}
	ch := m.join
	if g.state != PreparingRebalance {
		c.prepareRebalance(g, now)
	}
	c.maybeCompleteJoin(g, now, false)
	return ch
}

func (g *group) byInstance(id string) *member {
	for _, m := range g.members {
		if m.InstanceID == id {
			return m
		}
	}
	return nil
}

// member returns the member memberID names, or why there is none:
// FENCED_INSTANCE_ID when instanceID now belongs to another member (a newer
// instance joined under it), else UNKNOWN_MEMBER_ID.
func (g *group) member(memberID, instanceID string) (*member, *kerr.Error) {
	if m := g.members[memberID]; m != nil {
		return m, nil
	}
	if instanceID != "" && g.byInstance(instanceID) != nil {
		return nil, kerr.FencedInstanceID
	}
	return nil, kerr.UnknownMemberID
}

func (c *Coordinator) replaceID(g *group, m *member, id string) {
	delete(g.members, m.ID)
	if g.leader == m.ID {
		g.leader = id
	}
	if m.join != nil {
		m.join <- JoinResult{Err: kerr.FencedInstanceID, MemberID: m.ID, Generation: -1}
		m.join = nil
	}
	if m.sync != nil {
		m.sync <- SyncResult{Err: kerr.FencedInstanceID}
		m.sync = nil
	}
	m.ID = id
	g.members[id] = m
}

// supportsAll reports whether the group can still agree on a protocol if a
// member with protos joins.
func (g *group) supportsAll(protos []Protocol) bool {
	for _, p := range protos {
		ok := true
		for _, m := range g.members {
			if !m.supports(p.Name) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (m *member) supports(name string) bool {
	for _, p := range m.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (m *member) metadata(name string) []byte {
	for _, p := range m.protocols {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

// prepareRebalance starts a join phase: members waiting for assignments
// are told to rejoin, and the phase ends at the longest rebalance timeout.
func (c *Coordinator) prepareRebalance(g *group, now time.Time) {
	for _, m := range g.members {
		if m.sync != nil {
			m.sync <- SyncResult{Err: kerr.RebalanceInProgress}
			m.sync = nil
		}
	}
	g.state = PreparingRebalance
	var longest time.Duration
	for _, m := range g.members {
		longest = max(longest, m.rebalance)
	}
	g.deadline = now.Add(longest)
}

// maybeCompleteJoin ends the join phase when every member has rejoined, or
// at the deadline (force), dropping the members that did not.
func (c *Coordinator) maybeCompleteJoin(g *group, now time.Time, force bool) {
	if g.state != PreparingRebalance {
		return
	}
	for id, m := range g.members {
		if m.join == nil {
			if !force {
				return
			}
			c.remove(g, id)
		}
	}
	g.generation++
	if c.OnRebalance != nil {
		c.OnRebalance(g.name)
	}
	if len(g.members) == 0 {
		// Kafka keeps the protocol type of an emptied group (ListGroups shows it).
		g.state, g.protocol, g.leader = Empty, "", ""
		return
	}
	g.protocol = g.chooseProtocol()
	if _, ok := g.members[g.leader]; !ok {
		g.leader = g.sortedIDs()[0]
	}
	g.state = CompletingRebalance
	g.deadline = now.Add(g.longestRebalance())
	var all []Member
	for _, id := range g.sortedIDs() {
		m := g.members[id]
		all = append(all, Member{ID: m.ID, InstanceID: m.InstanceID, ClientID: m.ClientID,
			ClientHost: m.ClientHost, Metadata: m.metadata(g.protocol)})
	}
	for _, m := range g.members {
		res := JoinResult{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol,
			LeaderID: g.leader, MemberID: m.ID}
		if m.ID == g.leader {
			res.Members = all
		}
		m.join <- res
		m.join = nil
		m.lastSeen = now
		m.Assignment = nil
	}
}

func (g *group) longestRebalance() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalance)
	}
	return d
}

func (g *group) sortedIDs() []string {
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// chooseProtocol picks, among the protocols every member supports, the one
// most members list first among those (Kafka's vote).
func (g *group) chooseProtocol() string {
	var candidates []string
	for _, p := range g.members[g.sortedIDs()[0]].protocols {
		all := true
		for _, m := range g.members {
			all = all && m.supports(p.Name)
		}
		if all {
			candidates = append(candidates, p.Name)
		}
	}
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if slices.Contains(candidates, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, name := range candidates {
		if best == "" || votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

func (c *Coordinator) remove(g *group, id string) {
	m := g.members[id]
	if m == nil {
		return
	}
	if m.join != nil {
		m.join <- JoinResult{Err: kerr.UnknownMemberID, MemberID: id, Generation: -1}
	}
	if m.sync != nil {
		m.sync <- SyncResult{Err: kerr.UnknownMemberID}
	}
	delete(g.members, id)
	if g.leader == id {
		g.leader = ""
	}
}

// Sync handles a SyncGroup request. Followers wait for the leader's
// assignments; the result arrives on the returned channel.
func (c *Coordinator) Sync(req SyncRequest) <-chan SyncResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[req.Group]
	if g == nil {
		return syncError(kerr.UnknownMemberID)
	}
	m := g.members[req.MemberID]
	switch {
	case m == nil:
		return syncError(kerr.UnknownMemberID)
	case req.InstanceID != "" && m.InstanceID != req.InstanceID:
		return syncError(kerr.FencedInstanceID)
	case req.Generation != g.generation:
		return syncError(kerr.IllegalGeneration)
	case (req.ProtocolType != "" && req.ProtocolType != g.protocolType) || (req.Protocol != "" && req.Protocol != g.protocol):
		return syncError(kerr.InconsistentGroupProtocol)
	}
	m.lastSeen = c.now()
	switch g.state {
	case PreparingRebalance:
		return syncError(kerr.RebalanceInProgress)
	case Stable:
		ch := make(chan SyncResult, 1)
		ch <- SyncResult{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.Assignment}
		return ch
	}
	// CompletingRebalance.
	if m.sync != nil {
		m.sync <- SyncResult{Err: kerr.RebalanceInProgress}
	}
	m.sync = make(chan SyncResult, 1)
	ch := m.sync
	if req.MemberID == g.leader {
		for id, mm := range g.members {
			a := req.Assignments[id]
			if len(a) > MaxMetadataBytes {
				a = nil
			}
			mm.Assignment = a
		}
		g.state = Stable
		for _, mm := range g.members {
			if mm.sync != nil {
				mm.sync <- SyncResult{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: mm.Assignment}
				mm.sync = nil
			}
		}
	}
	return ch
}

// Heartbeat handles a Heartbeat request and returns its error (nil = ok).
func (c *Coordinator) Heartbeat(groupName, memberID, instanceID string, generation int32) *kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[groupName]
	if g == nil {
		return kerr.UnknownMemberID
	}
	m, err := g.member(memberID, instanceID)
	switch {
	case err != nil:
		return err
	case generation != g.generation && g.state != PreparingRebalance:
		return kerr.IllegalGeneration
	}
	m.lastSeen = c.now()
	if g.state == PreparingRebalance {
		return kerr.RebalanceInProgress
	}
	return nil
}

// Leave removes members (LeaveGroup); each gets its own error.
func (c *Coordinator) Leave(groupName string, memberIDs, instanceIDs []string) []*kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := make([]*kerr.Error, len(memberIDs))
	g := c.groups[groupName]
	if g == nil {
		for i := range errs {
			errs[i] = kerr.UnknownMemberID
		}
		return errs
	}
	now := c.now()
	left := false
	for i, id := range memberIDs {
		inst := ""
		if i < len(instanceIDs) {
			inst = instanceIDs[i]
		}
		if inst != "" {
			m := g.byInstance(inst)
			switch {
			case m == nil:
				errs[i] = kerr.UnknownMemberID
				continue
			case id != "" && m.ID != id:
				errs[i] = kerr.FencedInstanceID
				continue
			}
			id = m.ID
		}
		if g.members[id] == nil {
			errs[i] = kerr.UnknownMemberID
			continue
		}
		c.remove(g, id)
		left = true
	}
	if left {
		c.membershipChanged(g, now)
	}
	return errs
}

// membershipChanged starts or finishes a join phase after members went away.
func (c *Coordinator) membershipChanged(g *group, now time.Time) {
	switch g.state {
	case Stable, CompletingRebalance:
		c.prepareRebalance(g, now)
		c.maybeCompleteJoin(g, now, false)
	case PreparingRebalance:
		c.maybeCompleteJoin(g, now, false)
	}
}

// Tick expires members whose session ran out and ends join and sync phases
// whose deadline passed. Call it periodically (the broker does every
// TickInterval).
func (c *Coordinator) Tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, g := range c.groups {
		if g.consumer != nil {
			c.tickConsumer(g.consumer, now)
			continue
		}
		for id, t := range g.pending {
			if now.After(t) {
				delete(g.pending, id)
			}
		}
		expired := false
		for id, m := range g.members {
			// A member waiting in a join is alive until the join phase ends.
			if m.join == nil && now.Sub(m.lastSeen) > m.session {
				c.remove(g, id)
				expired = true
			}
		}
		if expired {
			c.membershipChanged(g, now)
		}
		switch {
		case g.state == PreparingRebalance && !now.Before(g.deadline):
			c.maybeCompleteJoin(g, now, true)
		case g.state == CompletingRebalance && !now.Before(g.deadline):
			// The leader never sent assignments: start over.
			c.prepareRebalance(g, now)
		}
	}
}

// TickInterval is how often the broker calls Tick: the resolution of
// session and rebalance timeouts.
const TickInterval = 100 * time.Millisecond

// Describe returns a group's description; ok is false if it does not exist.
func (c *Coordinator) Describe(name string) (Description, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	if g == nil {
		return Description{Group: name, State: Dead}, false
	}
	if g.consumer != nil {
		// Kafka's DescribeGroups (v0-v5) answers a consumer-protocol group
		// as Dead, without an error; ConsumerGroupDescribe describes it.
		return Description{Group: name, State: Dead}, true
	}
	d := Description{Group: name, State: g.state, ProtocolType: g.protocolType, Protocol: g.protocol, Generation: g.generation}
	for _, id := range g.sortedIDs() {
		m := g.members[id]
		mm := m.Member
		mm.Metadata = m.metadata(g.protocol)
		d.Members = append(d.Members, mm)
	}
	return d, true
}

// List returns every group's name, protocol type and state, sorted by name.
func (c *Coordinator) List() []Description {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Description, 0, len(c.groups))
	for _, g := range c.groups {
		d := Description{Group: g.name, State: g.state, ProtocolType: g.protocolType, Type: "classic"}
		if g.consumer != nil {
			d.State, d.Type = g.consumer.state(), "consumer"
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// Delete removes an empty group and its committed offsets.
func (c *Coordinator) Delete(name string) *kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	switch {
	case g == nil:
		return kerr.GroupIDNotFound
	case !g.empty():
		return kerr.NonEmptyGroup
	}
	if err := c.offsets.DeleteGroup(name); err != nil {
		return kerr.UnknownServerError
	}
	g.state = Dead
	delete(c.groups, name)
	return nil
}

// DeleteOffsets forgets a group's committed offsets of parts
// (OffsetDelete), as Kafka: an unknown group is GROUP_ID_NOT_FOUND; a group
// with members is NON_EMPTY_GROUP unless it is a consumer group, whose
// partitions of topics a member subscribes to are GROUP_SUBSCRIBED_TO_TOPIC
// (in partErrs, aligned with parts) while the rest are deleted. An empty
// group left without offsets is removed, as Kafka removes it.
func (c *Coordinator) DeleteOffsets(name string, parts []TopicPartition) (groupErr *kerr.Error, partErrs []*kerr.Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	if g == nil {
		return kerr.GroupIDNotFound, nil
	}
	partErrs = make([]*kerr.Error, len(parts))
	var del []TopicPartition
	if g.empty() {
		del = parts
	} else {
		if g.consumer == nil && g.protocolType != consumerProtocolType {
			return kerr.NonEmptyGroup, nil
		}
		for i, tp := range parts {
			if g.subscribedTo(tp.Topic) {
				partErrs[i] = kerr.GroupSubscribedToTopic
			} else {
				del = append(del, tp)
			}
		}
	}
	left, err := c.offsets.DeleteOffsets(name, del)
	if err != nil {
		return kerr.UnknownServerError, nil
	}
	if left == 0 && g.empty() {
		if err := c.offsets.DeleteGroup(name); err != nil {
			return kerr.UnknownServerError, nil
		}
		g.state = Dead
		delete(c.groups, name)
	}
	return nil, partErrs
}

// consumerProtocolType is the protocol type of Kafka consumers' groups,
// whose member metadata names the subscribed topics.
const consumerProtocolType = "consumer"

// subscribedTo says whether a member subscribes to topic, by the
// subscription in its metadata (of the chosen protocol, or of each it
// offers while none is chosen yet). Metadata that does not decode counts as
// subscribed, so offsets possibly in use are never deleted.
func (g *group) subscribedTo(topic string) bool {
	if g.consumer != nil {
		for _, m := range g.consumer.members {
			if slices.Contains(m.topics, topic) || (m.re != nil && m.re.MatchString(topic)) {
				return true
			}
		}
		return false
	}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if g.protocol != "" && p.Name != g.protocol {
				continue
			}
			var meta kmsg.ConsumerMemberMetadata
			if err := meta.ReadFrom(p.Metadata); err != nil || slices.Contains(meta.Topics, topic) {
				return true
			}
		}
	}
	return false
}

// CommitRequest is an OffsetCommit request.
type CommitRequest struct {
	Group      string
	MemberID   string
	InstanceID string
	Generation int32 // -1 with no member id: a commit outside group management
	Offsets    []Offset
	// Version is the OffsetCommit version: consumer-protocol members must
	// use v9+, where Generation is their member epoch.
	Version int16
}

// Commit stores offsets if the committer may (OffsetCommit). The returned
// error applies to every partition of the request.
func (c *Coordinator) Commit(req CommitRequest) *kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.Group == "" {
		return kerr.InvalidGroupID
	}
	g := c.getOrCreate(req.Group)
	if g.consumer != nil {
		if err := g.consumer.checkCommit(req.MemberID, req.InstanceID, req.Generation, req.Version, false, offsetParts(req.Offsets)); err != nil {
			return err
		}
		if m := g.consumer.members[req.MemberID]; m != nil {
			m.lastSeen = c.now()
		}
	} else if req.Generation >= 0 || req.MemberID != "" {
		m, err := g.member(req.MemberID, req.InstanceID)
		switch {
		case err != nil:
			return err
		case req.Generation != g.generation:
			return kerr.IllegalGeneration
		case g.state == CompletingRebalance:
			return kerr.RebalanceInProgress
		}
		m.lastSeen = c.now()
	} else if len(g.members) > 0 {
		// Kafka refuses a commit outside group management while the group
		// has members: it would race their own commits.
		return kerr.UnknownMemberID
	}
	for _, o := range req.Offsets {
		if len(o.Metadata) > MaxOffsetMetadata {
			return kerr.OffsetMetadataTooLarge
		}
	}
	if err := c.offsets.Commit(req.Group, req.Offsets); err != nil {
		return kerr.UnknownServerError
	}
	return nil
}

// Fetch returns committed offsets of a group (OffsetFetch): for the given
// partitions, or every committed one when parts is nil.
func (c *Coordinator) Fetch(groupName string, parts []TopicPartition) []Offset {
	return c.offsets.Fetch(groupName, parts)
}

// CheckFetch validates the member id and epoch an OffsetFetch v9+ names:
// for a consumer-protocol group the member must exist at that epoch
// (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH); epoch -1 names no member.
// Classic groups are not checked, as Kafka does not check them.
func (c *Coordinator) CheckFetch(groupName, memberID string, epoch int32) *kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[groupName]
	if g == nil || g.consumer == nil {
		return nil
	}
	return g.consumer.checkFetch(memberID, epoch)
}

func offsetParts(offsets []Offset) []TopicPartition {
	out := make([]TopicPartition, len(offsets))
	for i, o := range offsets {
		out[i] = o.TopicPartition
	}
	return out
}

// CheckMember validates the member and generation a TxnOffsetCommit (v3+)
// names, as OffsetCommit would, without committing: an empty member id
// with generation -1 commits outside group management.
func (c *Coordinator) CheckMember(groupName, memberID, instanceID string, generation int32) *kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if groupName == "" {
		return kerr.InvalidGroupID
	}
	if memberID == "" && generation < 0 {
		return nil
	}
	g := c.groups[groupName]
	if g == nil {
		return kerr.UnknownMemberID
	}
	if g.consumer != nil {
		return g.consumer.checkCommit(memberID, instanceID, generation, 0, true, nil)
	}
	_, err := g.member(memberID, instanceID)
	if err == nil && generation != g.generation {
		return kerr.IllegalGeneration
	}
	return err
}

// CommitTxnOffsets stores offsets a committed transaction held for the
// group (TxnOffsetCommit, applied at the COMMIT marker). The member checks
// were made when the offsets were sent; the group is created if it has
// never been seen, so it is listed and deletable like any other.
func (c *Coordinator) CommitTxnOffsets(groupName string, offsets []Offset) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.getOrCreate(groupName)
	return c.offsets.Commit(groupName, offsets)
}
