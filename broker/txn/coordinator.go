package txn

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/broker/group"
)

// State is a transaction's state, named as Kafka's TransactionState.
type State string

// Transaction states. Prepare* are durable decisions whose markers may not
// be written yet; Complete* mean every marker is written.
const (
	Empty          State = "Empty"
	Ongoing        State = "Ongoing"
	PrepareCommit  State = "PrepareCommit"
	PrepareAbort   State = "PrepareAbort"
	CompleteCommit State = "CompleteCommit"
	CompleteAbort  State = "CompleteAbort"
)

// States lists every state, for metrics.
var States = []State{Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort}

func (s State) known() bool { return slices.Contains(States, s) }

func (s State) preparing() bool { return s == PrepareCommit || s == PrepareAbort }

// Limits, named after the Kafka settings they mirror.
const (
	// MaxTimeout is transaction.max.timeout.ms (15 minutes): a client asking
	// for a longer transaction.timeout.ms gets INVALID_TRANSACTION_TIMEOUT,
	// so one stuck producer cannot hold read_committed consumers back for
	// longer.
	MaxTimeout = 15 * time.Minute
	// IDExpiration is transactional.id.expiration.ms (7 days): an id with no
	// transaction open and no request for this long is forgotten.
	IDExpiration = 7 * 24 * time.Hour
	// TickInterval is how often the broker looks for timed-out
	// transactions (Kafka checks every 10s; a shorter interval costs a scan
	// of the ids and aborts closer to the timeout).
	TickInterval = 250 * time.Millisecond
	// exhaustedEpoch is the epoch past which an id gets a new producer id
	// instead of a bump, as Kafka's isEpochExhausted (one spare epoch for
	// fencing on timeout).
	exhaustedEpoch = math.MaxInt16 - 1
)

// Result says how a transaction ended, for metrics.
type Result string

// Results.
const (
	Committed Result = "commit"
	Aborted   Result = "abort"
	TimedOut  Result = "timeout"
)

// Completion is a decided transaction whose markers are to be written:
// the caller writes a marker for ProducerID/Epoch to every partition, makes
// them durable, then (commit) applies Offsets to the groups, then calls
// Complete. If any of it fails it calls Failed, and Pending hands the
// completion out again later.
type Completion struct {
	TransactionalID string
	ProducerID      int64
	Epoch           int16
	Commit          bool
	Partitions      []group.TopicPartition
	Offsets         map[string][]group.Offset
	Result          Result
}

// txn is one transactional id.
type txn struct {
	id         string
	pid        int64
	epoch      int16
	prevPID    int64 // before the last bump: a retried init may name it
	prevEpoch  int16
	timeoutMs  int32
	state      State
	partitions map[group.TopicPartition]bool
	groups     map[string]bool
	offsets    map[string]map[group.TopicPartition]group.Offset
	started    time.Time // of the open transaction
	updated    time.Time
	result     Result // of the transaction being prepared
	handedOut  bool   // its completion is being run
}

func (t *txn) clone() *txn {
	n := *t
	n.partitions = maps.Clone(t.partitions)
	n.groups = maps.Clone(t.groups)
	n.offsets = make(map[string]map[group.TopicPartition]group.Offset, len(t.offsets))
	for g, m := range t.offsets {
		n.offsets[g] = maps.Clone(m)
	}
	return &n
}

// clear ends the transaction's contents (after completion or a bump).
func (t *txn) clear() {
	t.partitions, t.groups, t.offsets = map[group.TopicPartition]bool{}, map[string]bool{}, map[string]map[group.TopicPartition]group.Offset{}
	t.started = time.Time{}
}

func (t *txn) record() record {
	r := record{ID: t.id, ProducerID: t.pid, Epoch: t.epoch, PrevProducer: t.prevPID, PrevEpoch: t.prevEpoch,
		TimeoutMs: t.timeoutMs, State: t.state, LastUpdatedMs: t.updated.UnixMilli()}
	if !t.started.IsZero() {
		r.StartedMs = t.started.UnixMilli()
	}
	for tp := range t.partitions {
		r.Partitions = append(r.Partitions, tp)
	}
	slices.SortFunc(r.Partitions, cmpTP)
	for g := range t.groups {
		r.Groups = append(r.Groups, g)
	}
	slices.Sort(r.Groups)
	if len(t.offsets) > 0 {
		r.Offsets = map[string][]group.Offset{}
		for g, m := range t.offsets {
			os := slices.Collect(maps.Values(m))
			slices.SortFunc(os, func(a, b group.Offset) int { return cmpTP(a.TopicPartition, b.TopicPartition) })
			r.Offsets[g] = os
		}
	}
	r.Result = t.result
	return r
}

func fromRecord(r record) *txn {
	t := &txn{id: r.ID, pid: r.ProducerID, epoch: r.Epoch, prevPID: r.PrevProducer, prevEpoch: r.PrevEpoch,
		timeoutMs: r.TimeoutMs, state: r.State, updated: time.UnixMilli(r.LastUpdatedMs)}
	t.clear()
	if r.StartedMs > 0 {
		t.started = time.UnixMilli(r.StartedMs)
	}
	for _, tp := range r.Partitions {
		t.partitions[tp] = true
	}
	for _, g := range r.Groups {
		t.groups[g] = true
	}
	for g, os := range r.Offsets {
		m := map[group.TopicPartition]group.Offset{}
		for _, o := range os {
			m[o.TopicPartition] = o
		}
		t.offsets[g] = m
	}
	t.result = r.Result
	return t
}

func cmpTP(a, b group.TopicPartition) int {
	switch {
	case a.Topic < b.Topic:
		return -1
	case a.Topic > b.Topic:
		return 1
	}
	return int(a.Partition) - int(b.Partition)
}

// Coordinator is the transaction coordinator of one broker. It owns the
// state of every transactional id and makes each transition durable in its
// log before acting on it; writing markers and offsets is left to the
// caller (see Completion), so the state machine is driven without sockets
// or partition logs in tests.
type Coordinator struct {
	mu       sync.Mutex
	log      *stateLog
	allocate func() (int64, error)
	now      func() time.Time
	txns     map[string]*txn
	byPID    map[int64]*txn

	// OnEnd, if set, is called (under the lock) when a transaction
	// completes; for metrics.
	OnEnd func(Result)
}

// Open opens the coordinator whose log lives in dir. allocate hands out
// fresh producer ids; now is the clock (time.Now outside tests).
// Transactions left in PrepareCommit or PrepareAbort by a crash are
// returned by Pending; ongoing ones continue and are aborted when their
// timeout, counted from their start, passes (at the first Expire when it
// passed while the broker was down).
func Open(dir string, allocate func() (int64, error), now func() time.Time) (*Coordinator, error) {
	if now == nil {
		now = time.Now
	}
	l, recs, err := openLog(dir)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{log: l, allocate: allocate, now: now, txns: map[string]*txn{}, byPID: map[int64]*txn{}}
	for _, r := range recs {
		t := fromRecord(r)
		c.txns[t.id] = t
		c.byPID[t.pid] = t
	}
	return c, nil
}

// Close closes the log.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.close()
}

// MaxProducerID is the largest producer id any transactional id holds or
// held, or -1, so the broker never hands it out again.
func (c *Coordinator) MaxProducerID() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := int64(-1)
	for _, t := range c.txns {
		m = max(m, t.pid, t.prevPID)
	}
	return m
}

// save makes n the state of its id and writes it to the log; the caller
// makes it durable before answering (see locked). On failure nothing
// changes.
func (c *Coordinator) save(n *txn) error {
	n.updated = c.now()
	_, err := c.log.write(n.record(), len(c.txns)+1, func() []record {
		out := make([]record, 0, len(c.txns)+1)
		for id, t := range c.txns {
			if id != n.id {
				out = append(out, t.record())
			}
		}
		return append(out, n.record())
	})
	if err != nil {
		return err
	}
	if old := c.txns[n.id]; old != nil && c.byPID[old.pid] == old {
		delete(c.byPID, old.pid)
	}
	c.txns[n.id] = n
	c.byPID[n.pid] = n
	return nil
}

// locked runs f under the coordinator's lock, then waits until everything
// written to the log by then is durable, so an answer never rests on a
// transition a crash could undo (its own, or an earlier one it read).
// Transitions of concurrent requests share one fsync.
func locked[T any](c *Coordinator, f func() T) (T, error) {
	c.mu.Lock()
	v := f()
	seq := c.log.position()
	c.mu.Unlock()
	return v, c.log.syncTo(seq)
}

// InitRequest is an InitProducerId request with a transactional id.
type InitRequest struct {
	TransactionalID string
	TimeoutMs       int32
	// ProducerID and Epoch are -1, or the producer's current ones when it
	// re-initialises to recover (KIP-360).
	ProducerID int64
	Epoch      int16
}

// InitResult answers an InitRequest. When Abort is set, the id had a
// transaction open: it is now fenced and decided as aborted; run Abort,
// then ask again.
type InitResult struct {
	ProducerID int64
	Epoch      int16
	Err        *kerr.Error
	Abort      *Completion
}

// InitProducerID gives the transactional id's producer its id and a new
// epoch, fencing every older instance.
func (c *Coordinator) InitProducerID(req InitRequest) InitResult {
	if req.TransactionalID == "" || (req.ProducerID < 0) != (req.Epoch < 0) {
		// As Kafka: a producer id and epoch come together or not at all.
		return initFail(kerr.InvalidRequest)
	}
	if req.TimeoutMs <= 0 || time.Duration(req.TimeoutMs)*time.Millisecond > MaxTimeout {
		return initFail(kerr.InvalidTransactionTimeout)
	}
	res, err := locked(c, func() InitResult { return c.initLocked(req) })
	if err != nil {
		return initFail(kerr.KafkaStorageError)
	}
	return res
}

func initFail(err *kerr.Error) InitResult { return InitResult{ProducerID: -1, Epoch: -1, Err: err} }

func (c *Coordinator) initLocked(req InitRequest) InitResult {
	fail := initFail
	t := c.txns[req.TransactionalID]
	if t == nil {
		pid, err := c.allocate()
		if err != nil {
			return fail(kerr.KafkaStorageError)
		}
		n := &txn{id: req.TransactionalID, pid: pid, prevPID: -1, prevEpoch: -1, timeoutMs: req.TimeoutMs, state: Empty}
		n.clear()
		if err := c.save(n); err != nil {
			return fail(kerr.KafkaStorageError)
		}
		return InitResult{ProducerID: pid, Epoch: 0}
	}
	if req.ProducerID >= 0 {
		switch {
		case req.ProducerID == t.pid && req.Epoch == t.epoch:
			// A recovering producer: bump below.
		case (req.ProducerID == t.pid || req.ProducerID == t.prevPID) && req.Epoch >= 0 && req.Epoch == t.prevEpoch &&
			!t.state.preparing() && t.state != Ongoing:
			// A retry of the init that made the current epoch (its
			// answer was lost), or the producer the broker fenced on
			// timeout coming back (KIP-588): it gets the current epoch.
			// An init by a new producer forgets the previous epoch, so
			// an instance it fenced cannot come back this way.
			return InitResult{ProducerID: t.pid, Epoch: t.epoch}
		default:
			return fail(kerr.ProducerFenced)
		}
	}
	switch {
	case t.state.preparing():
		return fail(kerr.ConcurrentTransactions)
	case t.state == Ongoing:
		comp, err := c.abortLocked(t, Aborted)
		if err != nil {
			return fail(kerr.KafkaStorageError)
		}
		return InitResult{ProducerID: -1, Epoch: -1, Abort: comp}
	}
	n := t.clone()
	if err := c.bump(n); err != nil {
		return fail(kerr.KafkaStorageError)
	}
	if req.ProducerID < 0 {
		// A new instance: whatever held the previous epoch is fenced for
		// good, as Kafka clears lastProducerEpoch.
		n.prevEpoch = -1
	}
	n.timeoutMs, n.state, n.result = req.TimeoutMs, Empty, ""
	n.clear()
	if err := c.save(n); err != nil {
		return fail(kerr.KafkaStorageError)
	}
	return InitResult{ProducerID: n.pid, Epoch: n.epoch}
}

// bump gives n the next epoch, or a new producer id at epoch 0 when the
// epochs are used up, remembering the old pair.
func (c *Coordinator) bump(n *txn) error {
	n.prevPID, n.prevEpoch = n.pid, n.epoch
	if n.epoch >= exhaustedEpoch {
		pid, err := c.allocate()
		if err != nil {
			return err
		}
		n.pid, n.epoch = pid, 0
		return nil
	}
	n.epoch++
	return nil
}

// abortLocked decides an open transaction as aborted under a bumped epoch
// (fencing the producer that opened it) and hands out its completion.
func (c *Coordinator) abortLocked(t *txn, why Result) (*Completion, error) {
	n := t.clone()
	if n.epoch < exhaustedEpoch {
		// The markers carry the new epoch, which fences the old one on
		// every partition of the transaction. At the last epoch the abort
		// uses it as is; the next init moves to a new producer id.
		n.prevPID, n.prevEpoch = n.pid, n.epoch
		n.epoch++
	}
	n.state, n.result = PrepareAbort, why
	if err := c.save(n); err != nil {
		return nil, err
	}
	return c.handOut(n), nil
}

func (c *Coordinator) handOut(t *txn) *Completion {
	t.handedOut = true
	comp := &Completion{TransactionalID: t.id, ProducerID: t.pid, Epoch: t.epoch, Commit: t.state == PrepareCommit,
		Result: t.result}
	for tp := range t.partitions {
		comp.Partitions = append(comp.Partitions, tp)
	}
	slices.SortFunc(comp.Partitions, cmpTP)
	if comp.Commit {
		comp.Offsets = map[string][]group.Offset{}
		for g, m := range t.offsets {
			comp.Offsets[g] = slices.Collect(maps.Values(m))
		}
	}
	return comp
}

// lookup finds the transactional id's state and checks the producer.
func (c *Coordinator) lookup(id string, pid int64, epoch int16) (*txn, *kerr.Error) {
	t := c.txns[id]
	switch {
	case t == nil || t.pid != pid:
		return nil, kerr.InvalidProducerIDMapping
	case t.epoch != epoch:
		return nil, kerr.ProducerFenced
	}
	return t, nil
}

// begin returns a copy of t to add to, with its transaction open.
func (c *Coordinator) begin(t *txn) (*txn, *kerr.Error) {
	if t.state.preparing() {
		return nil, kerr.ConcurrentTransactions
	}
	n := t.clone()
	if n.state != Ongoing {
		n.clear()
		n.state, n.result, n.started = Ongoing, "", c.now()
	}
	return n, nil
}

// AddPartitions adds partitions to the producer's transaction, opening
// one if needed (AddPartitionsToTxn).
func (c *Coordinator) AddPartitions(id string, pid int64, epoch int16, parts []group.TopicPartition) *kerr.Error {
	return lockedCode(c, func() *kerr.Error { return c.addPartitionsLocked(id, pid, epoch, parts) })
}

// lockedCode is locked for answers that are an error code.
func lockedCode(c *Coordinator, f func() *kerr.Error) *kerr.Error {
	e, err := locked(c, f)
	if err != nil {
		return kerr.KafkaStorageError
	}
	return e
}

func (c *Coordinator) addPartitionsLocked(id string, pid int64, epoch int16, parts []group.TopicPartition) *kerr.Error {
	t, e := c.lookup(id, pid, epoch)
	if e != nil {
		return e
	}
	if t.state == Ongoing && !slices.ContainsFunc(parts, func(tp group.TopicPartition) bool { return !t.partitions[tp] }) {
		return nil // nothing new: no write
	}
	n, e := c.begin(t)
	if e != nil {
		return e
	}
	for _, tp := range parts {
		n.partitions[tp] = true
	}
	return c.saveOr(n)
}

func (c *Coordinator) saveOr(n *txn) *kerr.Error {
	if err := c.save(n); err != nil {
		return kerr.KafkaStorageError
	}
	return nil
}

// AddOffsets lets the producer's transaction commit offsets of a group
// (AddOffsetsToTxn).
func (c *Coordinator) AddOffsets(id string, pid int64, epoch int16, groupID string) *kerr.Error {
	return lockedCode(c, func() *kerr.Error { return c.addOffsetsLocked(id, pid, epoch, groupID) })
}

func (c *Coordinator) addOffsetsLocked(id string, pid int64, epoch int16, groupID string) *kerr.Error {
	t, e := c.lookup(id, pid, epoch)
	if e != nil {
		return e
	}
	if t.state == Ongoing && t.groups[groupID] {
		return nil
	}
	n, e := c.begin(t)
	if e != nil {
		return e
	}
	n.groups[groupID] = true
	return c.saveOr(n)
}

// CommitOffsets holds offsets of a group added with AddOffsets until the
// transaction commits (TxnOffsetCommit). They are durable on return.
func (c *Coordinator) CommitOffsets(id, groupID string, pid int64, epoch int16, offsets []group.Offset) *kerr.Error {
	return lockedCode(c, func() *kerr.Error { return c.commitOffsetsLocked(id, groupID, pid, epoch, offsets) })
}

func (c *Coordinator) commitOffsetsLocked(id, groupID string, pid int64, epoch int16, offsets []group.Offset) *kerr.Error {
	t, e := c.lookup(id, pid, epoch)
	switch {
	case e != nil:
		return e
	case t.state.preparing():
		return kerr.ConcurrentTransactions
	case t.state != Ongoing || !t.groups[groupID]:
		// AddOffsetsToTxn must come first.
		return kerr.InvalidTxnState
	}
	n := t.clone()
	m := n.offsets[groupID]
	if m == nil {
		m = map[group.TopicPartition]group.Offset{}
		n.offsets[groupID] = m
	}
	now := c.now()
	for _, o := range offsets {
		if o.Time.IsZero() {
			o.Time = now
		}
		m[o.TopicPartition] = o
	}
	return c.saveOr(n)
}

// EndTxn decides the producer's transaction (EndTxn). On success with a
// completion, run it; a nil completion means the same decision was already
// complete (a retried EndTxn).
func (c *Coordinator) EndTxn(id string, pid int64, epoch int16, commit bool) (*Completion, *kerr.Error) {
	type answer struct {
		comp *Completion
		err  *kerr.Error
	}
	a, err := locked(c, func() answer {
		comp, e := c.endTxnLocked(id, pid, epoch, commit)
		return answer{comp, e}
	})
	if err != nil {
		// The decision may not be durable: its markers must not be
		// written. The log is unusable now; a restart reloads it.
		return nil, kerr.KafkaStorageError
	}
	return a.comp, a.err
}

func (c *Coordinator) endTxnLocked(id string, pid int64, epoch int16, commit bool) (*Completion, *kerr.Error) {
	t, e := c.lookup(id, pid, epoch)
	if e != nil {
		return nil, e
	}
	want, result := PrepareAbort, Aborted
	if commit {
		want, result = PrepareCommit, Committed
	}
	switch t.state {
	case Ongoing:
		n := t.clone()
		n.state, n.result = want, result
		if err := c.save(n); err != nil {
			return nil, kerr.KafkaStorageError
		}
		return c.handOut(n), nil
	case PrepareCommit, PrepareAbort:
		if t.state == want {
			return nil, kerr.ConcurrentTransactions
		}
	case CompleteCommit:
		if commit {
			return nil, nil
		}
	case CompleteAbort:
		if !commit {
			return nil, nil
		}
	}
	return nil, kerr.InvalidTxnState
}

// Complete records that a completion's markers (and offsets) are durable.
//
// It writes the record but does not wait for its fsync, which saves one
// fsync round on every EndTxn. Nothing can rest on it before it is
// durable: the decision (Prepare*) already is, so a crash that loses the
// Complete record only runs the completion again on restart (markers and
// offsets are written again, which changes nothing). The producer's next
// transition (AddPartitionsToTxn, InitProducerId, ...) goes through locked,
// whose fsync covers every entry written before it, this one included, so
// no later state of the id can become durable without it.
func (c *Coordinator) Complete(comp *Completion) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.completeLocked(comp)
}

func (c *Coordinator) completeLocked(comp *Completion) error {
	t := c.txns[comp.TransactionalID]
	if t == nil || t.pid != comp.ProducerID || t.epoch != comp.Epoch || !t.state.preparing() {
		return nil // already completed
	}
	n := t.clone()
	n.state = CompleteAbort
	if t.state == PrepareCommit {
		n.state = CompleteCommit
	}
	result := n.result
	n.result, n.handedOut = "", false
	n.clear()
	if err := c.save(n); err != nil {
		t.handedOut = false
		return err
	}
	if c.OnEnd != nil {
		c.OnEnd(result)
	}
	return nil
}

// Failed gives back a completion that could not be run; Pending returns it
// again.
func (c *Coordinator) Failed(comp *Completion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.txns[comp.TransactionalID]; t != nil && t.pid == comp.ProducerID && t.epoch == comp.Epoch {
		t.handedOut = false
	}
}

// Pending hands out the completions of decided transactions nobody is
// running: after a restart, or after Failed.
func (c *Coordinator) Pending() []*Completion {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Completion
	for _, id := range slices.Sorted(maps.Keys(c.txns)) {
		if t := c.txns[id]; t.state.preparing() && !t.handedOut {
			out = append(out, c.handOut(t))
		}
	}
	return out
}

// Expire aborts, under a bumped epoch, the open transactions older than
// their timeout, and forgets ids idle for IDExpiration. It returns the
// aborts to run.
func (c *Coordinator) Expire() ([]*Completion, error) {
	type answer struct {
		comps []*Completion
		err   error
	}
	a, err := locked(c, func() answer {
		comps, err := c.expireLocked()
		return answer{comps, err}
	})
	if err != nil {
		// The aborts may not be durable: their markers must not be
		// written.
		return nil, err
	}
	return a.comps, a.err
}

func (c *Coordinator) expireLocked() ([]*Completion, error) {
	now := c.now()
	var out []*Completion
	for _, id := range slices.Sorted(maps.Keys(c.txns)) {
		t := c.txns[id]
		switch {
		case t.state == Ongoing && now.Sub(t.started) > time.Duration(t.timeoutMs)*time.Millisecond:
			comp, err := c.abortLocked(t, TimedOut)
			if err != nil {
				return out, err
			}
			out = append(out, comp)
		case (t.state == Empty || t.state == CompleteCommit || t.state == CompleteAbort) && now.Sub(t.updated) > IDExpiration:
			if _, err := c.log.write(record{ID: id, Deleted: true}, len(c.txns)-1, func() []record {
				var rs []record
				for other, o := range c.txns {
					if other != id {
						rs = append(rs, o.record())
					}
				}
				return rs
			}); err != nil {
				return out, err
			}
			delete(c.txns, id)
			if c.byPID[t.pid] == t {
				delete(c.byPID, t.pid)
			}
		}
	}
	return out, nil
}

// CheckProduce says whether a transactional batch of producer pid at epoch
// may go to tp: the producer must be a transactional id's current one with
// tp added to its open transaction. Produce answers with these codes.
// It reads the state without waiting for the log: the producer only sends
// to tp after its AddPartitionsToTxn was answered, so durably, and no other
// request may add partitions to its transaction.
func (c *Coordinator) CheckProduce(pid int64, epoch int16, tp group.TopicPartition) *kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.byPID[pid]
	switch {
	case t == nil:
		return kerr.InvalidProducerIDMapping
	case epoch != t.epoch:
		return kerr.InvalidProducerEpoch
	case t.state != Ongoing || !t.partitions[tp]:
		return kerr.InvalidTxnState
	}
	return nil
}

// Description is one transactional id's state (DescribeTransactions,
// ListTransactions).
type Description struct {
	TransactionalID string
	ProducerID      int64
	Epoch           int16
	State           State
	Partitions      []group.TopicPartition
	TimeoutMs       int32
	Started         time.Time // of the open transaction; zero if none
}

// Describe returns the state of a transactional id.
func (c *Coordinator) Describe(id string) (Description, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.txns[id]
	if t == nil {
		return Description{}, false
	}
	return describe(t), true
}

func describe(t *txn) Description {
	d := Description{TransactionalID: t.id, ProducerID: t.pid, Epoch: t.epoch, State: t.state, TimeoutMs: t.timeoutMs,
		Started: t.started}
	for tp := range t.partitions {
		d.Partitions = append(d.Partitions, tp)
	}
	slices.SortFunc(d.Partitions, cmpTP)
	return d
}

// List describes every transactional id, sorted by id.
func (c *Coordinator) List() []Description {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Description, 0, len(c.txns))
	for _, id := range slices.Sorted(maps.Keys(c.txns)) {
		out = append(out, describe(c.txns[id]))
	}
	return out
}

// Counts returns how many transactional ids are in each state.
func (c *Coordinator) Counts() map[State]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[State]int{}
	for _, t := range c.txns {
		m[t.state]++
	}
	return m
}

// PendingOffset says a transaction not yet complete holds an offset of
// groupID for tp (OffsetFetch with require_stable answers
// UNSTABLE_OFFSET_COMMIT then).
func (c *Coordinator) PendingOffset(groupID string, tp group.TopicPartition) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.txns {
		if _, ok := t.offsets[groupID][tp]; ok {
			return true
		}
	}
	return false
}
