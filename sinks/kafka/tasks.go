package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/sinks/internal/commit"
)

// A pipeline split into tasks (engine.TaskSink, docs/ARCHITECTURE.md §11),
// when the sink writes to the source's cluster: KIP-447's design. Each
// process has one transactional producer, its id derived from the
// process's identity in the task group, so a restarted process fences its
// predecessor and aborts its open transaction at once. A round is one
// transaction holding the output, a round record in the checkpoint topic
// and each task's positions as the group's offsets (TxnOffsetCommit), each
// offset's metadata naming its task's epoch. The offset commit carries the
// member id and generation the tasks were opened in: once the group moved
// on (a rebalance, a session lost, a restart of the same identity) the
// broker refuses it, and the round is aborted with engine.ErrFenced.
// OpenTasks reads the offsets with require_stable, so it waits until a
// transaction holding offsets of the group (a zombie's) is decided.

// TaskGroup is the consumer group a sink split into tasks commits its
// positions to: the source's task group (sources/kafka.Group).
type TaskGroup interface {
	// Name is the group's id.
	Name() string
	// Identity is the process's identity in the group, kept across
	// restarts; "" when it has none.
	Identity() string
	// Member returns the member id, generation (-1 before joining) and
	// instance id the group's client holds now.
	Member() (memberID string, generation int32, instanceID string)
	// SinkCommitsOffsets turns off the source's echo of positions to the
	// group: the sink's transactions hold them.
	SinkCommitsOffsets()
	// Topics returns the topics the group reads (those a pattern matches).
	Topics() []string
}

const (
	// taskMetadataPrefix starts the offset metadata of a task's
	// partition; the task's epoch follows.
	taskMetadataPrefix = "sluice-epoch:"
	// taskRecordSuffix keys the round records in the checkpoint topic
	// (PIPELINE/tasks), apart from the single chain's checkpoints.
	taskRecordSuffix = "/tasks"
	// stableWait bounds how long OpenTasks waits for a transaction
	// holding offsets of the group to be decided: the broker aborts one
	// at its timeout.
	stableWait = transactionTimeout + 15*time.Second
	// offsetRetries bounds the retries of AddOffsetsToTxn and
	// TxnOffsetCommit on retriable errors (coordinator moving or
	// loading, concurrent transactions).
	offsetRetries = 20
)

// retryDelay spaces the retries of offset requests and of OpenTasks's
// wait for stable offsets.
var retryDelay = backoff.Policy{Min: 20 * time.Millisecond, Max: time.Second}

// taskState is what the sink knows of the tasks it runs.
type taskState struct {
	// known holds each opened task's checkpoint: read, derived from the
	// single chain, or committed since.
	known map[engine.Task]engine.Checkpoint
	// The group membership the tasks were opened in; every round's
	// offset commit names it.
	memberID   string
	generation int32
	instanceID string
	// chain is the single-chain checkpoint, read once (after fencing the
	// chain's transactional id); nil until a task needs it.
	chain *checkpoint
	// topicIDs caches the source topics' ids, which TxnOffsetCommit v6
	// names them by, for as long as the tasks are open: a topic deleted
	// and made again under the same name meanwhile fails the commit, and
	// the next OpenTasks looks them up afresh.
	topicIDs map[string][16]byte
}

var _ engine.TaskSink = (*Sink)(nil)

// taskRound is the value of a round record: what the round committed.
type taskRound struct {
	Format     int                               `json:"format"`
	Pipeline   string                            `json:"pipeline"`
	Tasks      map[engine.Task]engine.Checkpoint `json:"tasks"`
	Member     string                            `json:"member"`
	Generation int32                             `json:"generation"`
	Time       time.Time                         `json:"time"`
}

// taskTransactionalID is the producer's transactional id in task mode:
// the pipeline's, then the process's identity in the group (a fresh one
// when the group has none: a predecessor's transaction then waits for the
// broker's timeout).
func (s *Sink) taskTransactionalID(pipeline string) string {
	id := s.cfg.Tasks.Identity()
	if id == "" {
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	return s.cfg.transactionalID(pipeline) + "." + id
}

// OpenTasks connects, fencing this identity's predecessor (or this
// process's own open transaction), and returns the committed
// checkpoint of each of tasks: its offsets in the group, read
// require_stable, with the epoch in their metadata; for a task with none,
// the single chain's checkpoint. The group membership it finds is the one
// the round commits name. ctx bounds only the opening.
func (s *Sink) OpenTasks(ctx context.Context, pipeline string, tasks []engine.Task) (map[engine.Task]engine.Checkpoint, error) {
	if s.cfg.Tasks == nil {
		return nil, errors.New("kafka sink: a pipeline split into tasks needs its task group (Config.Tasks); run it in one process")
	}
	// A new producer at every open: its initialisation aborts whatever
	// this process left open, and a producer the broker fenced (a
	// transaction past its timeout) is not reused.
	chain := s.task.chain
	if s.pipeline != pipeline {
		chain = nil
	}
	if s.cl != nil {
		s.cl.Close() // the new producer's initialisation aborts what it left
		s.cl = nil
	}
	if err := s.connectTasks(ctx, pipeline); err != nil {
		return nil, err
	}
	s.task.chain = chain
	member, gen, inst := s.cfg.Tasks.Member()
	if gen < 0 || member == "" {
		return nil, engine.Retryable(fmt.Errorf("kafka sink: not a member of group %s yet", s.cfg.Tasks.Name()))
	}
	offsets, err := s.stableOffsets(ctx, tasks)
	if err != nil {
		return nil, err
	}
	out := map[engine.Task]engine.Checkpoint{}
	for _, t := range tasks {
		cp, ok, err := taskCheckpoint(offsets, t)
		if err != nil {
			return nil, err
		}
		if !ok {
			chain, err := s.chainCheckpoint(ctx, pipeline)
			if err != nil {
				return nil, err
			}
			if chain.Epoch == 0 {
				continue
			}
			cp = engine.Checkpoint{Epoch: chain.Epoch, At: chain.Positions.OfTask(t)}
		}
		out[t] = cp
	}
	s.task.known = map[engine.Task]engine.Checkpoint{}
	for t, cp := range out {
		s.task.known[t] = engine.Checkpoint{Epoch: cp.Epoch, At: cp.At.Clone()}
	}
	s.task.memberID, s.task.generation, s.task.instanceID = member, gen, inst
	return out, nil
}

func (s *Sink) connectTasks(ctx context.Context, pipeline string) error {
	s.pipeline, s.staged.Epoch, s.failure, s.mem = pipeline, 0, nil, arena{}
	s.task = taskState{}
	txnID := s.taskTransactionalID(pipeline)
	s.fence = commit.Fence{Sink: "kafka sink", Pipeline: pipeline, Where: "group " + s.cfg.Tasks.Name(),
		Advice: "another process runs the task now; this one reopens with the tasks it holds"}
	cl, err := s.newProducer(ctx, pipeline, txnID)
	if err != nil {
		return err
	}
	s.cl, s.txnID, s.stored = cl, txnID, nil // a new client stores its topics afresh
	return nil
}

// newProducer connects a transactional producer, creates missing topics
// and initialises the producer id, which fences older holders of txnID.
func (s *Sink) newProducer(ctx context.Context, pipeline, txnID string) (*kgo.Client, error) {
	opts, err := s.cfg.clientOptions("sluice-sink-" + pipeline)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(transactionTimeout),
		kgo.MaxBufferedBytes(maxBufferedBytes),
		kgo.ProducerBatchCompression(s.cfg.codec()),
		kgo.RecordRetries(recordRetries),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	if err := s.cfg.ensureTopics(ctx, cl, pipeline, s.log); err != nil {
		cl.Close()
		return nil, err
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		hint := "; the cluster must support transactions (Kafka 0.11+) and allow this client to use the transactional id"
		if err = classify(err); engine.IsRetryable(err) || errors.Is(err, engine.ErrFenced) {
			hint = ""
		}
		return nil, fmt.Errorf("kafka sink: init transactional producer %q: %w%s", txnID, err, hint)
	}
	return cl, nil
}

// chainCheckpoint returns the pipeline's single-chain checkpoint, read
// once per connection after initialising the chain's transactional id: a
// chain process still running is fenced, and its open transaction aborted,
// before the tasks start from what it committed.
func (s *Sink) chainCheckpoint(ctx context.Context, pipeline string) (checkpoint, error) {
	if s.task.chain != nil {
		return *s.task.chain, nil
	}
	cl, err := s.newProducer(ctx, pipeline, s.cfg.transactionalID(pipeline))
	if err != nil {
		return checkpoint{}, err
	}
	cl.Close()
	c, err := readCheckpoint(ctx, s.cfg, pipeline)
	if err != nil {
		return checkpoint{}, err
	}
	s.task.chain = &c
	return c, nil
}

// committed is a partition's committed offset in the group.
type committed struct {
	at   int64
	meta string
}

// stableOffsets fetches the group's committed offsets of the tasks'
// partitions, waiting while a transaction holding some of them is
// undecided (UNSTABLE_OFFSET_COMMIT). The partitions are named: a broker
// reports a pending offset only for a partition asked for (a fetch of the
// whole group lists only those already committed).
func (s *Sink) stableOffsets(ctx context.Context, tasks []engine.Task) (map[engine.TopicPartition]committed, error) {
	group := s.cfg.Tasks.Name()
	topics := slices.Sorted(slices.Values(s.cfg.Tasks.Topics()))
	out := map[engine.TopicPartition]committed{}
	if len(topics) == 0 || len(tasks) == 0 {
		return out, nil
	}
	details, err := kadm.NewClient(s.cl).ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: list topics: %w", classify(err))
	}
	names := map[[16]byte]string{}
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	for _, topic := range topics {
		d, ok := details[topic]
		if !ok || d.Err != nil {
			continue // gone since the group matched it
		}
		names[d.ID] = topic
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.Topic, rt.TopicID = topic, d.ID
		for _, t := range tasks {
			if _, ok := d.Partitions[int32(t)]; ok {
				rt.Partitions = append(rt.Partitions, int32(t))
			}
		}
		if len(rt.Partitions) > 0 {
			rg.Topics = append(rg.Topics, rt)
		}
	}
	if len(rg.Topics) == 0 {
		return out, nil
	}
	req := kmsg.NewPtrOffsetFetchRequest()
	req.RequireStable, req.Groups = true, []kmsg.OffsetFetchRequestGroup{rg}
	deadline := time.Now().Add(stableWait)
	for n := 0; ; n++ {
		clear(out)
		unstable, err := fetchOffsets(ctx, s.cl, req, names, out)
		if err != nil {
			return nil, fmt.Errorf("kafka sink: read the offsets of group %s: %w", group, classify(err))
		}
		if !unstable {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, engine.Retryable(fmt.Errorf("kafka sink: offsets of group %s are still held by an undecided transaction after %s", group, stableWait))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(retryDelay.Delay(n)):
		}
	}
}

// fetchOffsets sends req once and adds what it finds to out; unstable
// says a transaction holds some of the offsets undecided.
func fetchOffsets(ctx context.Context, cl *kgo.Client, req *kmsg.OffsetFetchRequest, names map[[16]byte]string, out map[engine.TopicPartition]committed) (unstable bool, err error) {
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return false, err
	}
	groups := resp.Groups
	if len(groups) == 0 { // answered in the form before v8
		g := kmsg.NewOffsetFetchResponseGroup()
		g.ErrorCode = resp.ErrorCode
		for _, t := range resp.Topics {
			gt := kmsg.NewOffsetFetchResponseGroupTopic()
			gt.Topic = t.Topic
			for _, p := range t.Partitions {
				gp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				gp.Partition, gp.Offset, gp.Metadata, gp.ErrorCode = p.Partition, p.Offset, p.Metadata, p.ErrorCode
				gt.Partitions = append(gt.Partitions, gp)
			}
			g.Topics = append(g.Topics, gt)
		}
		groups = append(groups, g)
	}
	for _, g := range groups {
		switch err := kerr.ErrorForCode(g.ErrorCode); {
		case errors.Is(err, kerr.GroupIDNotFound):
			continue // nothing committed yet
		case err != nil:
			return false, err
		}
		for _, t := range g.Topics {
			topic := t.Topic
			if topic == "" {
				topic = names[t.TopicID]
			}
			for _, p := range t.Partitions {
				switch err := kerr.ErrorForCode(p.ErrorCode); {
				case errors.Is(err, kerr.UnstableOffsetCommit):
					unstable = true
					continue
				case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
					continue
				case err != nil:
					return false, fmt.Errorf("%s/%d: %w", topic, p.Partition, err)
				}
				if p.Offset >= 0 && p.Metadata != nil {
					out[engine.TopicPartition{Topic: topic, Partition: p.Partition}] = committed{at: p.Offset, meta: *p.Metadata}
				}
			}
		}
	}
	return unstable, nil
}

// taskCheckpoint returns task t's checkpoint from the group's offsets:
// the offsets of its partitions that a round committed (their metadata
// names an epoch), and the highest such epoch. Offsets without it (an
// echo, another tool's commit) do not count.
func taskCheckpoint(offsets map[engine.TopicPartition]committed, t engine.Task) (engine.Checkpoint, bool, error) {
	cp := engine.Checkpoint{At: engine.Positions{}}
	found := false
	for tp, o := range offsets {
		if engine.TaskOf(tp) != t || !strings.HasPrefix(o.meta, taskMetadataPrefix) {
			continue
		}
		epoch, err := strconv.ParseUint(strings.TrimPrefix(o.meta, taskMetadataPrefix), 10, 64)
		if err != nil {
			return cp, false, fmt.Errorf("kafka sink: offset of %s/%d has metadata %q, which is not a sluice epoch; was the group's offset set by another tool?", tp.Topic, tp.Partition, o.meta)
		}
		cp.At[tp] = o.at
		cp.Epoch, found = max(cp.Epoch, epoch), true
	}
	return cp, found, nil
}

// CommitTasks commits round's transaction with every task's positions as
// the group's offsets, in the membership the tasks were opened in. It
// implements engine.TaskSink.
func (s *Sink) CommitTasks(ctx context.Context, round uint64, cps map[engine.Task]engine.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.cl == nil || s.task.known == nil {
		return errors.New("kafka sink: CommitTasks before OpenTasks")
	}
	if err := s.staged.CheckCommit(round); err != nil {
		return err
	}
	v, first := commit.CheckTasks(cps, func(t engine.Task) engine.Checkpoint { return s.task.known[t] })
	switch v {
	case commit.Done:
		return s.abort(ctx)
	case commit.Fenced:
		err := s.fence.Error(cps[first].Epoch, fmt.Sprintf("task %d holds epoch %d", first, s.task.known[first].Epoch))
		if aerr := s.abort(ctx); aerr != nil {
			s.log.Warn("kafka sink: abort after refused commit", "pipeline", s.pipeline, "round", round, "err", aerr)
		}
		return err
	}
	if err := s.begin(ctx, round); err != nil {
		return err
	}
	value, err := json.Marshal(taskRound{Format: checkpointFormat, Pipeline: s.pipeline, Tasks: cps,
		Member: s.task.memberID, Generation: s.task.generation, Time: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("kafka sink: encode round: %w", err)
	}
	// The round record also makes every round's transaction hold a record,
	// which franz-go needs to send the EndTxn at all.
	s.noteTopic(s.cfg.checkpointTopic(s.pipeline))
	s.cl.Produce(ctx, &kgo.Record{Topic: s.cfg.checkpointTopic(s.pipeline), Key: []byte(s.pipeline + taskRecordSuffix), Value: value}, s.promise)
	// The offsets need not wait for the records, only EndTxn does: they go
	// out while the records are flushed, so a round costs the longer of
	// the two, not their sum (two more round trips to the coordinator,
	// each waiting for its log's fsync).
	offsets := make(chan error, 1)
	go func() { offsets <- s.commitOffsets(ctx, cps) }()
	if err := s.cl.Flush(ctx); err != nil {
		s.fail(err)
	}
	offsetsErr := <-offsets
	if err := s.awaitStored(ctx); err != nil {
		s.fail(err)
	}
	if err := s.failed(); err != nil {
		if aerr := s.abort(ctx); aerr != nil && !isFenced(err) {
			s.log.Warn("kafka sink: abort after failed write", "pipeline", s.pipeline, "round", round, "err", aerr)
		}
		return fmt.Errorf("kafka sink: round %d: %w", round, classify(err))
	}
	if err := offsetsErr; err != nil {
		err = s.offsetError(err, cps)
		if aerr := s.abort(ctx); aerr != nil && !isFenced(aerr) {
			s.log.Warn("kafka sink: abort after refused offsets", "pipeline", s.pipeline, "round", round, "err", aerr)
		}
		return err
	}
	if err := s.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		if isFenced(err) {
			return fmt.Errorf("kafka sink: commit round %d: %w", round, classify(err))
		}
		return fmt.Errorf("kafka sink: commit round %d: %w (%w)", round, engine.ErrNotCommitted, engine.Retryable(err))
	}
	for t, cp := range cps {
		s.task.known[t] = engine.Checkpoint{Epoch: cp.Epoch, At: cp.At.Clone()}
	}
	s.staged.Epoch = 0
	s.mem.reset()
	return nil
}

// commitOffsets adds the group to the open transaction and sends the
// tasks' positions as its offsets (franz-go sends these requests only for
// its own group consumer, so the sink sends them through the producer).
func (s *Sink) commitOffsets(ctx context.Context, cps map[engine.Task]engine.Checkpoint) error {
	pid, epoch, err := s.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("kafka sink: %w", classify(err))
	}
	group := s.cfg.Tasks.Name()
	txnID := s.txnID
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, pid, epoch, group
	if err := retryOffsets(ctx, func() error {
		resp, err := add.RequestWith(ctx, s.cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.ErrorCode)
	}); err != nil {
		return err
	}

	byTopic := map[string][]kmsg.TxnOffsetCommitRequestTopicPartition{}
	for _, t := range slices.Sorted(maps.Keys(cps)) {
		meta := taskMetadataPrefix + strconv.FormatUint(cps[t].Epoch, 10)
		for tp, off := range cps[t].At {
			p := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			p.Partition, p.Offset, p.LeaderEpoch, p.Metadata = tp.Partition, off, -1, &meta
			byTopic[tp.Topic] = append(byTopic[tp.Topic], p)
		}
	}
	if len(byTopic) == 0 {
		return nil
	}
	topics := slices.Sorted(maps.Keys(byTopic))
	ids, err := s.topicIDs(ctx, topics)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = txnID, group, pid, epoch
	req.MemberID, req.Generation = s.task.memberID, s.task.generation
	if s.task.instanceID != "" {
		req.InstanceID = &s.task.instanceID
	}
	for _, topic := range topics {
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID, rt.Partitions = topic, ids[topic], byTopic[topic]
		req.Topics = append(req.Topics, rt)
	}
	err = retryOffsets(ctx, func() error {
		resp, err := req.RequestWith(ctx, s.cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return err
}

// topicIDs returns the ids of topics (TxnOffsetCommit v6 names topics by
// id), looked up once for as long as the tasks are open.
func (s *Sink) topicIDs(ctx context.Context, topics []string) (map[string][16]byte, error) {
	var missing []string
	for _, t := range topics {
		if _, ok := s.task.topicIDs[t]; !ok {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return s.task.topicIDs, nil
	}
	details, err := kadm.NewClient(s.cl).ListTopics(ctx, missing...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: list topics: %w", classify(err))
	}
	ids := maps.Clone(s.task.topicIDs)
	if ids == nil {
		ids = map[string][16]byte{}
	}
	for _, t := range missing {
		d, ok := details[t]
		switch {
		case !ok:
			return nil, fmt.Errorf("kafka sink: topic %s is not in the cluster's metadata", t)
		case d.Err != nil:
			return nil, fmt.Errorf("kafka sink: look up topic %s: %w", t, classify(d.Err))
		}
		ids[t] = d.ID
	}
	s.task.topicIDs = ids
	return ids, nil
}

// offsetError turns a refused offset commit of cps into the sink's
// errors: a stale membership fences the round.
func (s *Sink) offsetError(err error, cps map[engine.Task]engine.Checkpoint) error {
	switch {
	case errors.Is(err, kerr.IllegalGeneration), errors.Is(err, kerr.UnknownMemberID), errors.Is(err, kerr.FencedInstanceID):
		t := slices.Min(slices.Collect(maps.Keys(cps)))
		return s.fence.Error(cps[t].Epoch, fmt.Sprintf("but the group moved on from generation %d of member %s, in which task %d was opened (%v)",
			s.task.generation, s.task.memberID, t, err))
	}
	return fmt.Errorf("kafka sink: commit offsets to group %s: %w", s.cfg.Tasks.Name(), classify(err))
}

// retryOffsets runs do until it succeeds, fails with an error that is not
// retriable, or offsetRetries run out.
func retryOffsets(ctx context.Context, do func() error) error {
	var err error
	for n := 0; n < offsetRetries; n++ {
		if err = do(); err == nil {
			return nil
		}
		var ke *kerr.Error
		if !errors.As(err, &ke) || !ke.Retriable && ke != kerr.ConcurrentTransactions {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryDelay.Delay(n)):
		}
	}
	return err
}
