package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkaconn"
)

// recvPartition is what the receiver knows of one partition it has logged,
// read or been assigned. Guarded by Receiver.gmu.
type recvPartition struct {
	// assigned: the group gave it to this member and where it starts was
	// settled (startPositions), until it is revoked or lost.
	assigned bool
	// at is where it reads next, -1 where unknown: the position it was
	// assigned at (a group commit or past the log), then after its latest
	// polled record. Unknown: started by the start policy and nothing
	// polled or listed yet.
	at int64
	// end is its last stable offset as of the latest fetch that returned
	// records or the latest listing since it was assigned; -1 unknown.
	end int64
	// logged is the highest offset in the write-ahead log, -1 none. Only
	// the poll loop (and Open) writes it.
	logged int64
	// pending is the group offset owed for what the log holds, while
	// hasPending: logged, group commit not yet acknowledged.
	pending    kgo.EpochOffset
	hasPending bool
}

// part returns tp's state, added if new. gmu must be held (or the loop not
// yet started).
func (r *Receiver) part(tp engine.TopicPartition) *recvPartition {
	p := r.parts[tp]
	if p == nil {
		p = &recvPartition{at: -1, end: -1, logged: -1}
		r.parts[tp] = p
	}
	return p
}

// checkTopics makes sure listed topics exist: a group consumer started on
// a missing topic would wait without saying why. A pattern may match
// nothing yet; topics are picked up as they appear.
func (r *Receiver) checkTopics(ctx context.Context) error {
	if r.pattern != nil {
		return nil
	}
	req := kmsg.NewPtrMetadataRequest()
	for _, name := range r.cfg.Topics {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, t)
	}
	// franz-go retries failed connections (SASL included) until ctx ends.
	ctx, cancel := context.WithTimeout(ctx, kafkaconn.DialTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, r.cl)
	if err != nil {
		if cerr := r.connErr.get(); cerr != nil {
			err = fmt.Errorf("%w; connecting: %w", err, cerr)
		}
		return engine.Retryable(fmt.Errorf("kafka metadata: %w", err))
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			name := ""
			if t.Topic != nil {
				name = *t.Topic
			}
			return engine.Retryable(fmt.Errorf("kafka topic %s: %w; create it (sluice topic create %s) or fix the topic name", name, err, name))
		}
	}
	return nil
}

// startPositions runs when partitions are assigned, with the group's
// committed offsets: a partition whose records the log already holds
// starts after them, and the group is moved there with the next commit.
// A partition that would resume below its log start lost records to
// retention, and on-data-loss decides: fail leaves it unread and fails the
// receiver, skip starts it at the log start.
func (r *Receiver) startPositions(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	if err := r.aloneAtFirstAssignment(ctx, cl); err != nil {
		return nil, err
	}
	resume := engine.Positions{}
	r.gmu.Lock()
	r.checked = true
	r.assignGen++
	for topic, parts := range offsets {
		for p, o := range parts {
			tp := engine.TopicPartition{Topic: topic, Partition: p}
			st := r.part(tp)
			// Where it ends is learned anew for this assignment.
			st.assigned, st.end = true, -1
			// Negative: no commit.
			at := o.EpochOffset().Offset
			if st.logged >= 0 && at <= st.logged {
				at = st.logged + 1
				parts[p] = kgo.NewOffset().At(at)
				if !st.hasPending {
					st.pending, st.hasPending = kgo.EpochOffset{Epoch: -1, Offset: at}, true
				}
				r.log.Debug("partition starts after what the write-ahead log holds", "partition", tp.String(), "offset", at)
			}
			if at < 0 {
				// Nothing committed or logged: the start policy
				// applies, and nothing can have been lost.
				st.at = -1
				continue
			}
			resume[tp] = at
			st.at = at
		}
	}
	r.gmu.Unlock()
	if len(resume) == 0 {
		return offsets, nil
	}
	if err := r.resumeInRange(ctx, cl, resume, offsets); err != nil {
		// The session ends and franz-go joins again; until then no
		// partition is read from a position that was not checked.
		r.log.Warn("log start offsets of assigned partitions not listed; joining the group again", "err", err)
		return nil, err
	}
	return offsets, nil
}

// aloneAtFirstAssignment checks, at the first assignment since Open and
// before anything is read, that no other process's log joined the group
// meanwhile (receiver_alone.go). If one did, the receiver fails, and the
// error ends the session before any partition is read or committed.
func (r *Receiver) aloneAtFirstAssignment(ctx context.Context, cl *kgo.Client) error {
	r.gmu.Lock()
	first := r.walID != "" && !r.alone && !r.skipAssignCheck
	r.gmu.Unlock()
	if !first {
		return nil
	}
	err := r.otherLog(ctx, cl)
	switch {
	case errors.Is(err, errNotAlone):
		r.fail(err)
		return err
	case err != nil:
		// Checked before joining: reading goes on.
		r.log.Warn("group not described at the first assignment; not checked for another process", "group", r.cfg.Group, "err", err)
	}
	r.gmu.Lock()
	r.alone = true
	r.gmu.Unlock()
	return nil
}

// skipped records that tp goes on at start after a loss; the handoff
// says whether the group is owed the new start.
func (r *Receiver) skipped(tp engine.TopicPartition, start int64) {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	st := r.part(tp)
	st.at = start
	r.h.skipped(st, start)
}

// lookupAll returns the listed offset of every partition in tps, or why
// one is missing.
func lookupAll(listed kadm.ListedOffsets, tps engine.Positions) (engine.Positions, error) {
	out := engine.Positions{}
	for tp := range tps {
		o, ok := listed.Lookup(tp.Topic, tp.Partition)
		if !ok {
			return nil, fmt.Errorf("kafka list offsets: %s not listed", tp)
		}
		if o.Err != nil {
			return nil, fmt.Errorf("kafka list offsets of %s: %w", tp, o.Err)
		}
		out[tp] = o.Offset
	}
	return out, nil
}

func topicsOf(tps engine.Positions) []string {
	var topics []string
	for tp := range tps {
		if !slices.Contains(topics, tp.Topic) {
			topics = append(topics, tp.Topic)
		}
	}
	return topics
}

// revoked runs before partitions go to another member. Everything polled
// is logged by then (rebalances wait for the block), so committing the
// logged offsets hands the partitions over exactly after the log.
func (r *Receiver) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	if err := r.commitPending(ctx, cl, revoked); err != nil {
		r.log.Warn("group offsets of revoked partitions not committed; their next owner re-reads what this receiver logged", "err", err)
	}
	r.unassign(revoked)
}

// lost runs when the group session ended without a chance to commit: the
// partitions may already be someone else's, so nothing is committed for
// them. If they come back, the log's offsets still skip what it holds.
func (r *Receiver) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if n := r.unassign(lost); n > 0 {
		r.log.Warn("group session lost before the group offsets of logged records were committed", "partitions", n)
	}
}

// unassign forgets that the partitions in tps are this member's, with
// their pending group offsets; it returns how many had one.
func (r *Receiver) unassign(tps map[string][]int32) int {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	r.assignGen++
	n := 0
	for topic, ps := range tps {
		for _, p := range ps {
			st := r.parts[engine.TopicPartition{Topic: topic, Partition: p}]
			if st == nil {
				continue
			}
			if st.hasPending {
				n++
			}
			st.assigned, st.hasPending, st.at, st.end = false, false, -1, -1
		}
	}
	return n
}

// commitPending commits the pending offsets of the partitions in only
// (nil: all) through cl and waits for the commit: for revoked partitions,
// before they go to another member. A group callback passes the client it
// was given: it may run before Open has set r.cl.
func (r *Receiver) commitPending(ctx context.Context, cl *kgo.Client, only map[string][]int32) error {
	r.gmu.Lock()
	offsets, upTo := r.pendingLocked(only)
	r.gmu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var err error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, rerr error) {
		err = commitError(resp, rerr)
	})
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", r.cfg.Group, err)
	}
	r.gmu.Lock()
	defer r.gmu.Unlock()
	r.committedLocked(offsets, upTo, only == nil)
	return nil
}

// commitLogged commits the pending offsets of every partition without
// waiting: the poll loop goes on reading while the group coordinator
// stores them. At most one such commit is in flight (franz-go keeps
// commits in order, and a sync commit waits for it); what becomes pending
// meanwhile is committed by the next block or within a block interval.
func (r *Receiver) commitLogged(ctx context.Context) {
	r.gmu.Lock()
	if r.committing {
		r.gmu.Unlock()
		return
	}
	offsets, upTo := r.pendingLocked(nil)
	if len(offsets) == 0 {
		if r.checked {
			r.groupSeq = max(r.groupSeq, upTo)
		}
		r.gmu.Unlock()
		return
	}
	r.committing = true
	r.gmu.Unlock()
	r.cl.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, rerr error) {
		err := commitError(resp, rerr)
		r.gmu.Lock()
		defer r.gmu.Unlock()
		r.committing = false
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("group offsets not committed after the write-ahead log; retrying with the next block", "group", r.cfg.Group, "err", err)
			}
			return
		}
		r.committedLocked(offsets, upTo, true)
	})
}

// pendingLocked returns the pending offsets of the partitions in only
// (nil: all) and the log sequence they cover: committed, they put the
// group past every record logged below it. gmu must be held.
func (r *Receiver) pendingLocked(only map[string][]int32) (map[string]map[int32]kgo.EpochOffset, int64) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for tp, st := range r.parts {
		if !st.hasPending || only != nil && !contains(only, tp) {
			continue
		}
		if offsets[tp.Topic] == nil {
			offsets[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.Topic][tp.Partition] = st.pending
	}
	return offsets, r.loggedSeq
}

// committedLocked forgets the pending offsets that offsets committed and
// did not change meanwhile; when they were every partition's (all), the
// log below upTo is covered by the group's offsets. gmu must be held.
func (r *Receiver) committedLocked(offsets map[string]map[int32]kgo.EpochOffset, upTo int64, all bool) {
	for topic, parts := range offsets {
		for p, eo := range parts {
			if st := r.parts[engine.TopicPartition{Topic: topic, Partition: p}]; st.hasPending && st.pending == eo {
				st.hasPending = false
			}
		}
	}
	if all && r.checked {
		r.groupSeq = max(r.groupSeq, upTo)
	}
}

// commitError is the error of a commit, or of the first partition it
// failed for.
func commitError(resp *kmsg.OffsetCommitResponse, err error) error {
	if err != nil || resp == nil {
		return err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
				return fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, perr)
			}
		}
	}
	return nil
}

func contains(tps map[string][]int32, tp engine.TopicPartition) bool {
	return slices.Contains(tps[tp.Topic], tp.Partition)
}

// commit commits offsets as this group member and fails on any
// partition's error.
func (r *Receiver) commit(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
	var err error
	r.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, rerr error) {
		err = commitError(resp, rerr)
	})
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", r.cfg.Group, err)
	}
	return nil
}

// listLags lists what Backlog needs beyond the fetches: where assigned
// partitions end while no fetch has said so (a caught-up partition returns
// no fetch at all) and where those the start policy placed begin, and,
// for the subscribed partitions this member does not hold, how far the
// group's committed offsets (or this receiver's log, if further) are from
// their ends. Those belong to the pipeline as much as the assigned ones:
// after a restart, a member of the killed instance keeps its partitions
// until its session expires, and a pipeline that counted only its own
// would be taken for caught up (--idle-exit) with their records unread.
// It runs on the poll loop; a failure is logged and the next call tries
// again.
func (r *Receiver) listLags(ctx context.Context) {
	r.gmu.Lock()
	gen := r.assignGen
	r.gmu.Unlock()
	adm := kadm.NewClient(r.cl)
	topics, err := r.subscribed(ctx, adm)
	var ends, starts kadm.ListedOffsets
	var committed kadm.OffsetResponses
	if err == nil && len(topics) > 0 {
		// read_committed ends: the last stable offsets.
		ends, err = adm.ListCommittedOffsets(ctx, topics...)
	}
	if err == nil && len(topics) > 0 && r.cfg.Start != "latest" {
		starts, err = adm.ListStartOffsets(ctx, topics...)
	}
	if err == nil {
		committed, err = adm.FetchOffsets(ctx, r.cfg.Group)
	}
	if err == nil {
		err = errors.Join(ends.Error(), starts.Error())
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("partition ends and group offsets not listed; backlog unknown until they are", "err", err)
		}
		return
	}
	r.gmu.Lock()
	defer r.gmu.Unlock()
	if gen != r.assignGen {
		return // the assignment changed meanwhile: list again
	}
	others := map[engine.TopicPartition]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		tp := engine.TopicPartition{Topic: o.Topic, Partition: o.Partition}
		start := o.Offset // latest: where a partition without commits starts
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			start = s.Offset
		}
		st := r.parts[tp]
		if st != nil && st.assigned {
			st.end = max(st.end, o.Offset)
			if st.at < 0 {
				// Where the start policy put it, nothing polled yet: the
				// log start, or (latest) the end, as franz-go listed them
				// too, moments apart; records that arrived in between are
				// found by the next fetch.
				st.at = start
			}
			return
		}
		from := start
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			from = c.At
		}
		if st != nil && st.logged >= 0 {
			// What this receiver's log holds is counted as stored.
			from = max(from, st.logged+1)
		}
		others[tp] = max(o.Offset-from, 0)
	})
	r.others, r.othersGen = others, gen
	// Whoever waits for Backlog to be known (tests) may look again.
	r.publish(func() {})
}

// subscribed returns the topics the receiver reads: the listed ones, or
// those the pattern matches now.
func (r *Receiver) subscribed(ctx context.Context, adm *kadm.Client) ([]string, error) {
	if r.pattern == nil {
		return r.cfg.Topics, nil
	}
	details, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	var topics []string
	for _, name := range details.Names() {
		if r.pattern.MatchString(name) {
			topics = append(topics, name)
		}
	}
	return topics, nil
}

// lagsStale reports whether listLags should run now rather than on its
// schedule: the assignment changed since the last listing, or an assigned
// partition's end or position is unknown.
func (r *Receiver) lagsStale() bool {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	if r.othersGen != r.assignGen {
		return true
	}
	for _, st := range r.parts {
		if st.assigned && (st.end < 0 || st.at < 0) {
			return true
		}
	}
	return false
}

// lagsEvery is how often listLags runs when nothing is stale: while other
// members hold subscribed partitions their offsets move, else only new
// topics and partitions can change what it says.
func (r *Receiver) lagsEvery() time.Duration {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	if len(r.others) > 0 {
		return listLagsEvery
	}
	return r.refreshEvery
}
