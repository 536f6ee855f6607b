package group

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Consumer-protocol groups (KIP-848, ConsumerGroupHeartbeat): the broker
// computes a target assignment with a server assignor and walks each member
// to it one heartbeat at a time. A partition moving between members is
// first revoked from its old owner, which keeps its member epoch until it
// reports (in a heartbeat's owned partitions) that it let go; only then is
// the partition free for the new owner, whose epoch advances to the target
// assignment epoch. A group is either classic or consumer-protocol: mixing
// is refused as Kafka refuses it with group.consumer.migration.policy
// disabled, and an empty group converts to the protocol of whoever joins.

// Consumer-protocol limits and defaults. Kafka sets the session timeout and
// heartbeat interval on the broker (group.consumer.session.timeout.ms,
// group.consumer.heartbeat.interval.ms), not per member.
const (
	DefaultConsumerSessionTimeout    = 45 * time.Second
	DefaultConsumerHeartbeatInterval = 5 * time.Second
	// MaxSubscribedTopics bounds one member's subscribed topic names: the
	// target assignment is computed over them on every group epoch.
	MaxSubscribedTopics = 10000
	// MaxRegexBytes bounds a subscription regex, compiled and matched
	// against every topic name whenever the group's epoch moves.
	MaxRegexBytes = 4096
	// MaxIDBytes bounds a member, instance or rack id, held per member.
	MaxIDBytes = 1024
)

// Member epochs with a meaning of their own in a heartbeat request.
const (
	joinEpoch        = 0
	leaveEpoch       = -1
	staticLeaveEpoch = -2
)

// Consumer group states, as Kafka's ConsumerGroupState names them.
const (
	Assigning   State = "Assigning"
	Reconciling State = "Reconciling"
)

// TopicInfo is what the coordinator needs of a topic.
type TopicInfo struct {
	ID         [16]byte
	Partitions int32
}

// TopicPartitions names partitions of one topic, by id and name.
type TopicPartitions struct {
	ID         [16]byte
	Topic      string
	Partitions []int32
}

// HeartbeatRequest is a ConsumerGroupHeartbeat request. Pointer and slice
// fields are nil when the member says "unchanged".
type HeartbeatRequest struct {
	Group            string
	MemberID         string
	MemberEpoch      int32
	InstanceID       *string
	RackID           *string
	RebalanceTimeout int32 // milliseconds, -1 = unchanged
	SubscribedTopics []string
	SubscribedRegex  *string
	ServerAssignor   *string
	Owned            []TopicPartitions // by ID; nil = unchanged
	ClientID         string
	ClientHost       string
}

// HeartbeatResult is a ConsumerGroupHeartbeat response.
type HeartbeatResult struct {
	Err               *kerr.Error
	Message           string
	MemberID          string
	MemberEpoch       int32
	HeartbeatInterval time.Duration
	// Assignment is sent when SendAssignment: the partitions the member
	// may consume now.
	SendAssignment bool
	Assignment     []TopicPartitions
}

type memberState int

const (
	stable     memberState = iota // at the target, or nothing to wait for
	unrevoked                     // must give up revoking before moving on
	unreleased                    // at the target epoch, waiting for partitions others hold
)

func (s memberState) String() string {
	switch s {
	case unrevoked:
		return "UNREVOKED_PARTITIONS"
	case unreleased:
		return "UNRELEASED_PARTITIONS"
	}
	return "STABLE"
}

type cmember struct {
	id, instanceID, rackID, clientID, clientHost string

	epoch, prevEpoch int32
	state            memberState
	rebalanceTimeout time.Duration
	topics           []string // subscribed names, sorted
	regex            string
	re               *regexp.Regexp
	assignor         string // "" = no preference

	assigned assignment // the member may consume these
	revoking assignment // the member must give these up
	// since is the member epoch at which each owned partition was given,
	// for the offset-commit check (an older epoch may still commit a
	// partition held since then).
	since map[tp]int32

	lastSeen       time.Time
	revokeDeadline time.Time // while unrevoked
}

type cgroup struct {
	epoch       int32 // group epoch: bumped when members or subscriptions change
	targetEpoch int32 // the group epoch the target assignment was computed at
	target      map[string]assignment
	assignor    string // used for the current target
	members     map[string]*cmember
	owner       map[tp]string // partition -> member holding it (assigned or revoking)
	topicsSeen  string        // fingerprint of the subscribed topics' metadata
	// allTopics is topicsHash of the broker's topics when topicsSeen was
	// last checked: while it holds, no subscribed topic can have changed,
	// and a heartbeat skips the per-member fingerprint.
	allTopics uint64
	joined    bool // a member joined in the heartbeat being handled
}

func newCGroup() *cgroup {
	return &cgroup{target: map[string]assignment{}, members: map[string]*cmember{}, owner: map[tp]string{}}
}

// consumerState is the group's state as ListGroups and
// ConsumerGroupDescribe show it.
func (cg *cgroup) state() State {
	switch {
	case len(cg.members) == 0:
		return Empty
	case cg.epoch > cg.targetEpoch:
		return Assigning
	}
	for _, m := range cg.members {
		if m.epoch != cg.targetEpoch || m.state != stable {
			return Reconciling
		}
	}
	return Stable
}

func (cg *cgroup) byInstance(id string) *cmember {
	for _, m := range cg.members {
		if m.instanceID == id {
			return m
		}
	}
	return nil
}

func hbError(err *kerr.Error, format string, args ...any) HeartbeatResult {
	return HeartbeatResult{Err: err, Message: fmt.Sprintf(format, args...)}
}

// validateHeartbeat applies Kafka's request checks, INVALID_REQUEST with
// the reason.
func validateHeartbeat(req *HeartbeatRequest) *HeartbeatResult {
	bad := func(format string, args ...any) *HeartbeatResult {
		r := hbError(kerr.InvalidRequest, format, args...)
		return &r
	}
	switch {
	case req.Group == "":
		return bad("GroupId can't be empty.")
	case req.MemberID == "":
		return bad("MemberId can't be empty.")
	case len(req.MemberID) > MaxIDBytes:
		return bad("MemberId is longer than %d bytes.", MaxIDBytes)
	case req.InstanceID != nil && (*req.InstanceID == "" || len(*req.InstanceID) > MaxIDBytes):
		return bad("InstanceId can't be empty or longer than %d bytes.", MaxIDBytes)
	case req.RackID != nil && (*req.RackID == "" || len(*req.RackID) > MaxIDBytes):
		return bad("RackId can't be empty or longer than %d bytes.", MaxIDBytes)
	case req.MemberEpoch < staticLeaveEpoch:
		return bad("MemberEpoch is invalid.")
	case req.MemberEpoch == staticLeaveEpoch && req.InstanceID == nil:
		return bad("InstanceId can't be null when leaving as a static member.")
	case len(req.SubscribedTopics) > MaxSubscribedTopics:
		return bad("SubscribedTopicNames has %d names; at most %d are allowed.", len(req.SubscribedTopics), MaxSubscribedTopics)
	case req.SubscribedRegex != nil && len(*req.SubscribedRegex) > MaxRegexBytes:
		return bad("SubscribedTopicRegex is longer than %d bytes.", MaxRegexBytes)
	}
	if req.MemberEpoch == joinEpoch {
		switch {
		case req.RebalanceTimeout == -1:
			return bad("RebalanceTimeoutMs must be provided in first request.")
		case len(req.Owned) > 0:
			return bad("TopicPartitions must be empty when (re-)joining.")
		case req.SubscribedTopics == nil && req.SubscribedRegex == nil:
			return bad("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
		}
	}
	if req.ServerAssignor != nil && !knownAssignor(*req.ServerAssignor) {
		r := hbError(kerr.UnsupportedAssignor, "ServerAssignor %s is not supported. Supported assignors: %s, %s.", *req.ServerAssignor, UniformAssignor, RangeAssignor)
		return &r
	}
	return nil
}

// compileRegex compiles a subscription regex as Kafka matches it (RE2J,
// whole topic name); Go's regexp is RE2 as well.
func compileRegex(s string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + s + ")$")
}

// ConsumerHeartbeat handles a ConsumerGroupHeartbeat request.
func (c *Coordinator) ConsumerHeartbeat(req HeartbeatRequest) HeartbeatResult {
	if r := validateHeartbeat(&req); r != nil {
		return *r
	}
	var re *regexp.Regexp
	if req.SubscribedRegex != nil && *req.SubscribedRegex != "" {
		var err error
		if re, err = compileRegex(*req.SubscribedRegex); err != nil {
			return hbError(kerr.InvalidRegularExpression, "SubscribedTopicRegex %s is not a valid regular expression: %v.", *req.SubscribedRegex, err)
		}
	}
	topics := c.topicInfo()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()

	g := c.groups[req.Group]
	if g == nil || g.consumer == nil {
		switch {
		case g != nil && len(g.members) > 0 && req.MemberEpoch == joinEpoch:
			return hbError(kerr.GroupIDNotFound, "Cannot upgrade classic group %s to consumer group because online upgrade is disabled.", req.Group)
		case g != nil && len(g.members) > 0:
			return hbError(kerr.GroupIDNotFound, "Group %s is not a consumer group.", req.Group)
		case req.MemberEpoch != joinEpoch:
			// Membership of consumer groups is kept in memory: after a
			// restart a member comes back unknown and rejoins.
			return hbError(kerr.UnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, req.Group)
		}
		// A new group, or an empty classic one (offsets only) converting.
		g = c.getOrCreate(req.Group)
		g.consumer = newCGroup()
		g.protocolType, g.protocol, g.leader, g.state = consumerProtocolType, "", "", Empty
		clear(g.pending)
	}
	cg := g.consumer

	m, res := c.consumerMember(g, &req, now, topics)
	if res != nil {
		return *res
	}
	if req.MemberEpoch == leaveEpoch || req.MemberEpoch == staticLeaveEpoch {
		return HeartbeatResult{MemberID: req.MemberID, MemberEpoch: req.MemberEpoch, HeartbeatInterval: c.heartbeatInterval()}
	}
	before := m.assigned.clone()

	// The member's settings; a changed subscription moves the group epoch.
	changed := false
	if req.RebalanceTimeout >= 0 {
		m.rebalanceTimeout = time.Duration(req.RebalanceTimeout) * time.Millisecond
	}
	if req.InstanceID != nil {
		m.instanceID = *req.InstanceID
	}
	if req.RackID != nil && *req.RackID != m.rackID {
		m.rackID = *req.RackID
		changed = true
	}
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
	if req.SubscribedTopics != nil {
		names := slices.Clone(req.SubscribedTopics)
		sort.Strings(names)
		names = slices.Compact(names)
		if !slices.Equal(names, m.topics) {
			m.topics = names
			changed = true
		}
	}
	if req.SubscribedRegex != nil && *req.SubscribedRegex != m.regex {
		m.regex, m.re = *req.SubscribedRegex, re
		changed = true
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.assignor {
		m.assignor = *req.ServerAssignor
		changed = true
	}
	m.lastSeen = now
	// A new member, a changed subscription, or topics created, deleted
	// or grown among those subscribed move the group epoch, once.
	if h := topicsHash(topics); h != cg.allTopics {
		cg.allTopics = h
		if fp := cg.fingerprint(topics); fp != cg.topicsSeen {
			cg.topicsSeen = fp
			changed = true
		}
	}
	if changed || cg.joined {
		cg.epoch++
		cg.joined = false
	}
	if cg.epoch > cg.targetEpoch {
		c.computeTarget(g.name, cg, topics)
	}

	var owned assignment
	if req.Owned != nil {
		owned = assignment{}
		byID := idIndex(topics)
		for _, t := range req.Owned {
			if name, ok := byID[t.ID]; ok {
				for _, p := range t.Partitions {
					owned.add(name, p)
				}
			}
		}
	}
	cg.reconcile(m, owned, now)

	res2 := HeartbeatResult{MemberID: m.id, MemberEpoch: m.epoch, HeartbeatInterval: c.heartbeatInterval()}
	full := req.RebalanceTimeout != -1 && (req.SubscribedTopics != nil || req.SubscribedRegex != nil) && req.Owned != nil
	if req.MemberEpoch == joinEpoch || full || !m.assigned.equal(before) {
		res2.SendAssignment = true
		res2.Assignment = toWire(m.assigned, topics)
	}
	return res2
}

// consumerMember finds or makes the member a heartbeat is from, checking
// its epoch, and handles leaving. A non-nil result is the answer.
func (c *Coordinator) consumerMember(g *group, req *HeartbeatRequest, now time.Time, topics map[string]TopicInfo) (*cmember, *HeartbeatResult) {
	cg := g.consumer
	fail := func(err *kerr.Error, format string, args ...any) (*cmember, *HeartbeatResult) {
		r := hbError(err, format, args...)
		return nil, &r
	}
	full := func(id string) bool { return len(cg.members) >= MaxMembers && cg.members[id] == nil }
	newMember := func() *cmember {
		m := &cmember{id: req.MemberID, assigned: assignment{}, revoking: assignment{}, since: map[tp]int32{}, lastSeen: now}
		cg.members[m.id] = m
		cg.joined = true // the group epoch moves once, below
		return m
	}

	if req.InstanceID != nil {
		inst := *req.InstanceID
		old := cg.byInstance(inst)
		switch req.MemberEpoch {
		case joinEpoch:
			switch {
			case old == nil || old.id == req.MemberID:
				if old != nil {
					c.removeConsumerMember(cg, old)
				}
				if full(req.MemberID) {
					return fail(kerr.GroupMaxSizeReached, "The consumer group has reached its maximum capacity of %d members.", MaxMembers)
				}
				if other := cg.members[req.MemberID]; other != nil {
					c.removeConsumerMember(cg, other)
				}
				m := newMember()
				m.instanceID = inst
				return m, nil
			case old.epoch != staticLeaveEpoch:
				return fail(kerr.UnreleasedInstanceID, "Static member %s with instance id %s cannot join the group because the instance id is owned by member %s.", req.MemberID, inst, old.id)
			}
			// A static member that left with epoch -2 comes back under a
			// new member id: it takes over the old member's place, epoch
			// and assignment, without a rebalance.
			delete(cg.members, old.id)
			for k, id := range cg.owner {
				if id == old.id {
					cg.owner[k] = req.MemberID
				}
			}
			if t, ok := cg.target[old.id]; ok {
				delete(cg.target, old.id)
				cg.target[req.MemberID] = t
			}
			old.id = req.MemberID
			old.epoch = old.prevEpoch
			old.lastSeen = now
			cg.members[old.id] = old
			return old, nil
		case staticLeaveEpoch:
			if old == nil {
				return fail(kerr.UnknownMemberID, "Instance id %s is unknown.", inst)
			}
			if old.id != req.MemberID {
				return fail(kerr.FencedInstanceID, "Static member %s with instance id %s is fenced by member %s.", req.MemberID, inst, old.id)
			}
			// Kept, with its assignment, until the session timeout: a
			// restart under the same instance id takes it back.
			old.prevEpoch, old.epoch = old.epoch, staticLeaveEpoch
			old.lastSeen = now
			return old, nil
		}
		if old == nil {
			return fail(kerr.UnknownMemberID, "Instance id %s is unknown.", inst)
		}
		if old.id != req.MemberID {
			return fail(kerr.FencedInstanceID, "Static member %s with instance id %s is fenced by member %s.", req.MemberID, inst, old.id)
		}
	}

	m := cg.members[req.MemberID]
	switch req.MemberEpoch {
	case joinEpoch:
		if m != nil {
			// A known member joining again (it lost its state, or a
			// response): it starts over, and what it held is free.
			c.removeConsumerMember(cg, m)
		}
		if full(req.MemberID) {
			return fail(kerr.GroupMaxSizeReached, "The consumer group has reached its maximum capacity of %d members.", MaxMembers)
		}
		return newMember(), nil
	case leaveEpoch:
		if m == nil {
			return fail(kerr.UnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, g.name)
		}
		c.removeConsumerMember(cg, m)
		return m, nil
	}
	if m == nil {
		return fail(kerr.UnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, g.name)
	}
	if m.epoch == staticLeaveEpoch {
		return fail(kerr.UnknownMemberID, "Member %s left the group %s.", req.MemberID, g.name)
	}
	switch {
	case req.MemberEpoch > m.epoch:
		return fail(kerr.FencedMemberEpoch, "The consumer group member has a greater member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch)
	case req.MemberEpoch < m.epoch:
		// The response that moved the epoch may have been lost: the
		// previous epoch with no more than the current assignment is
		// accepted.
		if req.MemberEpoch != m.prevEpoch || req.Owned == nil || !ownedSubset(req.Owned, m.assigned, topics) {
			return fail(kerr.FencedMemberEpoch, "The consumer group member has a smaller member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch)
		}
	}
	return m, nil
}

func ownedSubset(owned []TopicPartitions, a assignment, topics map[string]TopicInfo) bool {
	byID := idIndex(topics)
	for _, t := range owned {
		name, ok := byID[t.ID]
		if !ok {
			return false
		}
		for _, p := range t.Partitions {
			if !a.has(name, p) {
				return false
			}
		}
	}
	return true
}

func idIndex(topics map[string]TopicInfo) map[[16]byte]string {
	out := make(map[[16]byte]string, len(topics))
	for name, t := range topics {
		out[t.ID] = name
	}
	return out
}

func toWire(a assignment, topics map[string]TopicInfo) []TopicPartitions {
	out := []TopicPartitions{}
	for _, t := range sortedKeys(a) {
		info, ok := topics[t]
		if !ok || len(a[t]) == 0 {
			continue
		}
		out = append(out, TopicPartitions{ID: info.ID, Topic: t, Partitions: slices.Clone(a[t])})
	}
	return out
}

// removeConsumerMember drops a member and frees what it held.
func (c *Coordinator) removeConsumerMember(cg *cgroup, m *cmember) {
	for k, id := range cg.owner {
		if id == m.id {
			delete(cg.owner, k)
		}
	}
	delete(cg.members, m.id)
	delete(cg.target, m.id)
	cg.epoch++
}

// subscribed resolves a member's subscription against existing topics.
// Internal topics never match a regex here: the broker's own
// __consumer_offsets has no records to consume.
func (m *cmember) subscribed(topics map[string]TopicInfo) []string {
	var out []string
	for _, t := range m.topics {
		if _, ok := topics[t]; ok {
			out = append(out, t)
		}
	}
	if m.re != nil {
		for t := range topics {
			if !isInternal(t) && m.re.MatchString(t) && !slices.Contains(m.topics, t) {
				out = append(out, t)
			}
		}
	}
	sort.Strings(out)
	return out
}

// isInternal names Kafka's internal topics, which regex subscriptions
// never match here.
func isInternal(topic string) bool {
	return topic == "__consumer_offsets" || topic == "__transaction_state"
}

// topicsHash summarises every topic's name, id and partition count,
// independently of map order, in one pass over the topics.
func topicsHash(topics map[string]TopicInfo) uint64 {
	var sum uint64
	for name, info := range topics {
		h := fnv.New64a()
		h.Write([]byte(name))
		h.Write(info.ID[:])
		binary.Write(h, binary.BigEndian, info.Partitions)
		sum += h.Sum64()
	}
	return sum
}

// fingerprint summarises the subscribed topics' ids and partition counts,
// so a heartbeat notices a topic created, deleted or grown.
func (cg *cgroup) fingerprint(topics map[string]TopicInfo) string {
	set := map[string]bool{}
	for _, m := range cg.members {
		for _, t := range m.subscribed(topics) {
			set[t] = true
		}
	}
	var b strings.Builder
	for _, t := range sortedKeys(set) {
		info := topics[t]
		fmt.Fprintf(&b, "%s/%x/%d;", t, info.ID, info.Partitions)
	}
	return b.String()
}

// preferredAssignor is the assignor most members name (ties: the first
// name in order), else the default.
func (cg *cgroup) preferredAssignor() string {
	votes := map[string]int{}
	for _, m := range cg.members {
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	best := DefaultAssignor
	for _, name := range sortedKeys(votes) {
		if votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// computeTarget runs the assignor for the current group epoch.
func (c *Coordinator) computeTarget(groupName string, cg *cgroup, topics map[string]TopicInfo) {
	in := assignInput{members: map[string][]string{}, partitions: map[string]int32{}, previous: cg.target}
	for id, m := range cg.members {
		subs := m.subscribed(topics)
		in.members[id] = subs
		for _, t := range subs {
			in.partitions[t] = topics[t].Partitions
		}
	}
	cg.assignor = cg.preferredAssignor()
	cg.target = runAssignor(cg.assignor, in)
	cg.targetEpoch = cg.epoch
	cg.topicsSeen, cg.allTopics = cg.fingerprint(topics), topicsHash(topics)
	if c.OnRebalance != nil {
		c.OnRebalance(groupName)
	}
}

// reconcile moves a member one step toward its target assignment. owned is
// what the member reported holding (nil: not reported).
func (cg *cgroup) reconcile(m *cmember, owned assignment, now time.Time) {
	if m.state == unrevoked {
		if owned == nil || owned.intersect(m.revoking).count() > 0 {
			return // still holding partitions it must give up
		}
		cg.release(m, m.revoking)
		m.revoking = assignment{}
		m.state = stable
	}
	if m.state == stable && m.epoch == cg.targetEpoch {
		return
	}
	target := cg.target[m.id]
	if target == nil {
		target = assignment{}
	}
	keep := m.assigned.intersect(target)
	revoke := m.assigned.minus(target)
	want := target.minus(m.assigned)
	// Partitions the member said it no longer holds need no revocation.
	if revoke.count() > 0 && (owned == nil || owned.intersect(revoke).count() > 0) {
		m.assigned = keep
		m.revoking = revoke
		m.state = unrevoked
		m.revokeDeadline = now.Add(m.rebalanceTimeout)
		return
	}
	cg.release(m, revoke)
	newEpoch := cg.targetEpoch
	m.assigned = keep
	waiting := false
	want.each(func(t string, p int32) {
		k := tp{t, p}
		if holder, ok := cg.owner[k]; ok && holder != m.id {
			waiting = true
			return
		}
		cg.owner[k] = m.id
		m.assigned.add(t, p)
		m.since[k] = newEpoch
	})
	if m.epoch != newEpoch {
		m.prevEpoch, m.epoch = m.epoch, newEpoch
	}
	m.state = stable
	if waiting {
		m.state = unreleased
	}
}

// release frees partitions a member held.
func (cg *cgroup) release(m *cmember, a assignment) {
	a.each(func(t string, p int32) {
		k := tp{t, p}
		if cg.owner[k] == m.id {
			delete(cg.owner, k)
		}
		delete(m.since, k)
	})
}

// tickConsumer expires members whose session ran out and fences those that
// did not revoke within their rebalance timeout.
func (c *Coordinator) tickConsumer(cg *cgroup, now time.Time) {
	session := c.sessionTimeout()
	for _, m := range cg.members {
		switch {
		case now.Sub(m.lastSeen) > session:
			c.removeConsumerMember(cg, m)
		case m.state == unrevoked && now.After(m.revokeDeadline):
			c.removeConsumerMember(cg, m)
		}
	}
}

func (c *Coordinator) sessionTimeout() time.Duration {
	if c.ConsumerSessionTimeout > 0 {
		return c.ConsumerSessionTimeout
	}
	return DefaultConsumerSessionTimeout
}

func (c *Coordinator) heartbeatInterval() time.Duration {
	if c.ConsumerHeartbeatInterval > 0 {
		return c.ConsumerHeartbeatInterval
	}
	return DefaultConsumerHeartbeatInterval
}

// topicInfo reads the topics, before c.mu is taken: the topic set has a
// lock of its own, never held together with the coordinator's.
func (c *Coordinator) topicInfo() map[string]TopicInfo {
	if c.Topics == nil {
		return map[string]TopicInfo{}
	}
	return c.Topics()
}

// ConsumerMember describes a consumer-protocol member.
type ConsumerMember struct {
	ID, InstanceID, RackID, ClientID, ClientHost string
	Epoch                                        int32
	State                                        string
	SubscribedTopics                             []string
	SubscribedRegex                              string
	Assignment, Target                           []TopicPartitions
}

// ConsumerDescription is a ConsumerGroupDescribe entry.
type ConsumerDescription struct {
	Group           string
	State           State
	Epoch           int32
	AssignmentEpoch int32
	Assignor        string
	Members         []ConsumerMember
}

// DescribeConsumer describes a consumer-protocol group. err is
// GROUP_ID_NOT_FOUND for an unknown group or a classic one, with Kafka's
// message.
func (c *Coordinator) DescribeConsumer(name string) (ConsumerDescription, *kerr.Error, string) {
	topics := c.topicInfo()
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	switch {
	case g == nil:
		return ConsumerDescription{Group: name, State: Dead}, kerr.GroupIDNotFound, fmt.Sprintf("Group %s not found.", name)
	case g.consumer == nil:
		return ConsumerDescription{Group: name, State: Dead}, kerr.GroupIDNotFound, fmt.Sprintf("Group %s is not a consumer group.", name)
	}
	cg := g.consumer
	d := ConsumerDescription{Group: name, State: cg.state(), Epoch: cg.epoch, AssignmentEpoch: cg.targetEpoch, Assignor: cg.preferredAssignor()}
	for _, id := range sortedKeys(cg.members) {
		m := cg.members[id]
		d.Members = append(d.Members, ConsumerMember{
			ID: m.id, InstanceID: m.instanceID, RackID: m.rackID, ClientID: m.clientID, ClientHost: m.clientHost,
			Epoch: m.epoch, State: m.state.String(), SubscribedTopics: slices.Clone(m.topics), SubscribedRegex: m.regex,
			Assignment: toWire(m.assigned, topics), Target: toWire(cg.target[id], topics),
		})
	}
	return d, nil, ""
}

// checkConsumerCommit validates an offset commit to a consumer-protocol
// group as Kafka does: an epoch below zero commits only while the group is
// empty; a member on the consumer protocol must use OffsetCommit v9+
// (transactional commits excepted); and the epoch must be the member's, or
// (as Kafka 4.3 relaxed it) an older one under which the member already
// held every partition committed.
func (cg *cgroup) checkCommit(memberID, instanceID string, epoch int32, version int16, txn bool, parts []TopicPartition) *kerr.Error {
	if epoch < 0 && len(cg.members) == 0 {
		return nil
	}
	if txn && epoch < 0 && memberID == "" && instanceID == "" {
		return nil
	}
	m := cg.members[memberID]
	if m == nil || m.epoch == staticLeaveEpoch {
		return kerr.UnknownMemberID
	}
	if !txn && version < 9 {
		return kerr.UnsupportedVersion
	}
	switch {
	case epoch == m.epoch:
		return nil
	case epoch > m.epoch || epoch < 0:
		return kerr.StaleMemberEpoch
	}
	for _, p := range parts {
		k := tp{p.Topic, p.Partition}
		if since, ok := m.since[k]; !ok || since > epoch || cg.owner[k] != m.id {
			return kerr.StaleMemberEpoch
		}
	}
	return nil
}

// checkFetch validates the member of an OffsetFetch v9+ to a
// consumer-protocol group: none named (epoch -1) reads freely, else the
// member must exist at that epoch.
func (cg *cgroup) checkFetch(memberID string, epoch int32) *kerr.Error {
	if epoch < 0 {
		return nil
	}
	m := cg.members[memberID]
	switch {
	case m == nil || m.epoch == staticLeaveEpoch:
		return kerr.UnknownMemberID
	case epoch != m.epoch:
		return kerr.StaleMemberEpoch
	}
	return nil
}
