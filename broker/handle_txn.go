package broker

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/group"
	"github.com/sluicehq/sluice/broker/storage"
	"github.com/sluicehq/sluice/broker/txn"
)

// Transactions (KIP-98). The coordinator in broker/txn decides; these
// handlers translate requests to it and run the decided transactions'
// completions: a marker to every partition of the transaction, fsynced,
// then the transaction's offsets to the groups, then Complete. EndTxn
// answers once the markers and offsets are durable (Complete is written but
// not awaited; see package txn) (Kafka answers after the decision
// and writes markers in the background; answering later spares clients
// CONCURRENT_TRANSACTIONS on their next transaction, and a crash in
// between is recovered the same way). Replies that write run on the
// connection's writer.

// fenced is PRODUCER_FENCED for request versions that know it (KIP-588),
// else INVALID_PRODUCER_EPOCH, which older clients treat the same way.
func fenced(err *kerr.Error, version, knowsFenced int16) int16 {
	if err == kerr.ProducerFenced && version < knowsFenced {
		return kerr.InvalidProducerEpoch.Code
	}
	return code(err)
}

// complete runs a decided transaction's completion (see package txn).
func (b *Broker) complete(comp *txn.Completion) error {
	err := b.writeCompletion(comp)
	if err == nil {
		err = b.txns.Complete(comp)
	}
	if err != nil {
		b.txns.Failed(comp)
		if b.txnErrors.allow(time.Now()) {
			b.log.Error("completing transaction failed; retrying in the background", "transactional_id", comp.TransactionalID,
				"commit", comp.Commit, "err", err)
		}
		return err
	}
	return nil
}

// logLimiter lets one log line through per txnErrorLogInterval, so a disk
// that keeps failing does not log every TickInterval.
type logLimiter struct{ last atomic.Int64 }

// txnErrorLogInterval spaces out repeated transaction failure logs.
const txnErrorLogInterval = 10 * time.Second

func (l *logLimiter) allow(now time.Time) bool {
	last := l.last.Load()
	return now.UnixNano()-last >= int64(txnErrorLogInterval) && l.last.CompareAndSwap(last, now.UnixNano())
}

// testHookMarker, when set by a test, runs before the i-th marker of a
// completion is written (the crash tests kill the broker process there).
var testHookMarker func(comp *txn.Completion, i int)

func (b *Broker) writeCompletion(comp *txn.Completion) error {
	now := time.Now()
	m := storage.Marker{ProducerID: comp.ProducerID, ProducerEpoch: comp.Epoch, Commit: comp.Commit}
	var wg sync.WaitGroup
	errs := make([]error, len(comp.Partitions))
	for i, tp := range comp.Partitions {
		if testHookMarker != nil {
			wg.Wait() // the markers before it are durable
			testHookMarker(comp, i)
		}
		p := b.topics.partition(tp.Topic, tp.Partition)
		if p == nil {
			continue // deleted with its data: nothing to mark
		}
		next, err := p.AppendMarker(m, now)
		if err != nil {
			if errors.Is(err, storage.ErrClosed) {
				continue // deleted meanwhile
			}
			errs[i] = fmt.Errorf("marker on %s/%d: %w", tp.Topic, tp.Partition, err)
			continue
		}
		// Separate files: fsync them at the same time.
		wg.Go(func() {
			if err := p.Sync(next); err != nil && !errors.Is(err, storage.ErrClosed) {
				errs[i] = fmt.Errorf("fsync marker on %s/%d: %w", tp.Topic, tp.Partition, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for g, offs := range comp.Offsets {
		if err := b.groups.CommitTxnOffsets(g, offs); err != nil {
			return fmt.Errorf("commit offsets of group %s: %w", g, err)
		}
	}
	return nil
}

func (b *Broker) runTxnChores() {
	expired, err := b.txns.Expire()
	if err != nil && b.txnErrors.allow(time.Now()) {
		b.log.Error("transaction timeout check failed; transactions cannot progress until the broker is restarted", "err", err)
	}
	for _, comp := range expired {
		b.log.Info("aborting transaction past its timeout", "transactional_id", comp.TransactionalID, "producer_id", comp.ProducerID)
		b.complete(comp)
	}
	for _, comp := range b.txns.Pending() {
		b.complete(comp)
	}
}

// initTransactional is InitProducerId with a transactional id. It runs on
// the writer: an open transaction is aborted first, markers and all.
func initTransactional(r *request, req *kmsg.InitProducerIDRequest) reply {
	b := r.c.b
	return func() *outgoing {
		resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
		ir := txn.InitRequest{TransactionalID: *req.TransactionalID, TimeoutMs: req.TransactionTimeoutMillis,
			ProducerID: req.ProducerID, Epoch: req.ProducerEpoch}
		if req.Version < 3 {
			ir.ProducerID, ir.Epoch = -1, -1
		}
		if ir.TransactionalID == "" {
			resp.ErrorCode = kerr.InvalidRequest.Code // as Kafka: null means idempotent, empty is wrong
			return &outgoing{resp: resp}
		}
		res := b.txns.InitProducerID(ir)
		if res.Abort != nil {
			if err := b.complete(res.Abort); err != nil {
				resp.ErrorCode = kerr.ConcurrentTransactions.Code // retried; the loop completes it
				return &outgoing{resp: resp}
			}
			res = b.txns.InitProducerID(ir)
		}
		if res.Err == kerr.InvalidTransactionTimeout {
			r.c.log.Warn("InitProducerId refused: transaction.timeout.ms out of range", "transactional_id", ir.TransactionalID,
				"timeout_ms", ir.TimeoutMs, "max", txn.MaxTimeout)
		}
		resp.ErrorCode = fenced(res.Err, req.Version, 4)
		resp.ProducerID, resp.ProducerEpoch = res.ProducerID, res.Epoch
		if res.Err == nil {
			b.metrics.producerIDs.Inc()
		}
		return &outgoing{resp: resp}
	}
}

func handleAddPartitionsToTxn(r *request) reply {
	req := r.msg.(*kmsg.AddPartitionsToTxnRequest)
	b := r.c.b
	txnAllowed := r.authorized(opWrite, resTxnID, req.TransactionalID)
	var denied []bool // by topic index
	if b.authz != nil && txnAllowed {
		denied = make([]bool, len(req.Topics))
		d := r.topicDecisions()
		for i, rt := range req.Topics {
			denied[i] = !d.allowed(r, opWrite, rt.Topic, false)
		}
	}
	return func() *outgoing {
		resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		// partErr is why a partition cannot be added: the client may not
		// write the topic, or it does not exist.
		partErr := func(ti int, t *topic, p int32) int16 {
			switch {
			case !txnAllowed:
				return kerr.TransactionalIDAuthorizationFailed.Code
			case denied != nil && denied[ti]:
				return kerr.TopicAuthorizationFailed.Code
			case t == nil || p < 0 || int(p) >= len(t.parts):
				return kerr.UnknownTopicOrPartition.Code
			}
			return 0
		}
		var parts []group.TopicPartition
		failed := false
		for ti, rt := range req.Topics {
			t := b.topics.get(rt.Topic)
			for _, p := range rt.Partitions {
				if partErr(ti, t, p) != 0 {
					failed = true
				}
				parts = append(parts, group.TopicPartition{Topic: rt.Topic, Partition: p})
			}
		}
		var errCode int16
		if !failed {
			errCode = fenced(b.txns.AddPartitions(req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts), req.Version, 2)
		}
		for ti, rt := range req.Topics {
			st := kmsg.NewAddPartitionsToTxnResponseTopic()
			st.Topic = rt.Topic
			t := b.topics.get(rt.Topic)
			for _, p := range rt.Partitions {
				sp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				sp.Partition, sp.ErrorCode = p, errCode
				if failed {
					// As Kafka: the failed ones say why, the rest were
					// not attempted.
					sp.ErrorCode = kerr.OperationNotAttempted.Code
					if code := partErr(ti, t, p); code != 0 {
						sp.ErrorCode = code
					}
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return &outgoing{resp: resp}
	}
}

func handleAddOffsetsToTxn(r *request) reply {
	req := r.msg.(*kmsg.AddOffsetsToTxnRequest)
	b := r.c.b
	switch {
	case !r.authorized(opWrite, resTxnID, req.TransactionalID):
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return respond(resp)
	case !r.authorized(opRead, resGroup, req.Group):
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return respond(resp)
	}
	return func() *outgoing {
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		if req.Group == "" {
			resp.ErrorCode = kerr.InvalidGroupID.Code
			return &outgoing{resp: resp}
		}
		resp.ErrorCode = fenced(b.txns.AddOffsets(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group), req.Version, 2)
		return &outgoing{resp: resp}
	}
}

func handleTxnOffsetCommit(r *request) reply {
	req := r.msg.(*kmsg.TxnOffsetCommitRequest)
	b := r.c.b
	// As Kafka: the transactional id, then the group, refuse the whole
	// request; a topic the client may not read refuses its partitions.
	var refused *kerr.Error
	switch {
	case !r.authorized(opWrite, resTxnID, req.TransactionalID):
		refused = kerr.TransactionalIDAuthorizationFailed
	case !r.authorized(opRead, resGroup, req.Group):
		refused = kerr.GroupAuthorizationFailed
	}
	var denied []bool // by topic index
	if b.authz != nil && refused == nil {
		denied = make([]bool, len(req.Topics))
		d := r.topicDecisions()
		for i, rt := range req.Topics {
			denied[i] = !d.allowed(r, opRead, rt.Topic, false)
		}
	}
	return func() *outgoing {
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		if refused != nil {
			for _, rt := range req.Topics {
				st := kmsg.NewTxnOffsetCommitResponseTopic()
				st.Topic = rt.Topic
				for _, p := range rt.Partitions {
					sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
					sp.Partition, sp.ErrorCode = p.Partition, refused.Code
					st.Partitions = append(st.Partitions, sp)
				}
				resp.Topics = append(resp.Topics, st)
			}
			return &outgoing{resp: resp}
		}
		var err *kerr.Error
		if req.Version >= 3 {
			err = b.groups.CheckMember(req.Group, req.MemberID, str(req.InstanceID), req.Generation)
		} else if req.Group == "" {
			err = kerr.InvalidGroupID
		}
		unknown := map[group.TopicPartition]*kerr.Error{}
		var offs []group.Offset
		for ti, rt := range req.Topics {
			t := b.topics.get(rt.Topic)
			for _, p := range rt.Partitions {
				tp := group.TopicPartition{Topic: rt.Topic, Partition: p.Partition}
				switch {
				case denied != nil && denied[ti]:
					unknown[tp] = kerr.TopicAuthorizationFailed
				case t == nil || p.Partition < 0 || int(p.Partition) >= len(t.parts):
					unknown[tp] = kerr.UnknownTopicOrPartition
				case len(str(p.Metadata)) > group.MaxOffsetMetadata:
					unknown[tp] = kerr.OffsetMetadataTooLarge
				default:
					le := int32(-1)
					if req.Version >= 2 {
						le = p.LeaderEpoch
					}
					offs = append(offs, group.Offset{TopicPartition: tp, Offset: p.Offset, LeaderEpoch: le, Metadata: str(p.Metadata)})
				}
			}
		}
		if err == nil && len(offs) > 0 {
			err = b.txns.CommitOffsets(req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch, offs)
		}
		for _, rt := range req.Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition = p.Partition
				sp.ErrorCode = fenced(err, req.Version, 3)
				if e := unknown[group.TopicPartition{Topic: rt.Topic, Partition: p.Partition}]; e != nil {
					sp.ErrorCode = e.Code
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return &outgoing{resp: resp}
	}
}

func handleEndTxn(r *request) reply {
	req := r.msg.(*kmsg.EndTxnRequest)
	b := r.c.b
	if !r.authorized(opWrite, resTxnID, req.TransactionalID) {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return respond(resp)
	}
	return func() *outgoing {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		comp, err := b.txns.EndTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit)
		if err == nil && comp != nil && b.complete(comp) != nil {
			// The decision is durable; the loop writes the markers.
			// CONCURRENT_TRANSACTIONS makes the client retry until then.
			err = kerr.ConcurrentTransactions
		}
		resp.ErrorCode = fenced(err, req.Version, 2)
		return &outgoing{resp: resp}
	}
}

// Introspection (KIP-664), for kafka-transactions.sh and kadm: which
// transactions are open, and which producer holds a partition's last
// stable offset back.

func handleListTransactions(r *request) reply {
	req := r.msg.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	states := map[string]bool{}
	for _, s := range req.StateFilters {
		if !slices.Contains(txn.States, txn.State(s)) {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, s)
			continue
		}
		states[s] = true
	}
	now := time.Now()
	for _, d := range r.c.b.txns.List() {
		switch {
		case !r.may(opDescribe, resTxnID, d.TransactionalID):
			continue
		case len(req.StateFilters) > 0 && !states[string(d.State)]:
			continue
		case len(req.ProducerIDFilters) > 0 && !slices.Contains(req.ProducerIDFilters, d.ProducerID):
			continue
		case req.Version >= 1 && req.DurationFilterMillis >= 0 &&
			(d.Started.IsZero() || now.Sub(d.Started) < time.Duration(req.DurationFilterMillis)*time.Millisecond):
			continue
		}
		st := kmsg.NewListTransactionsResponseTransactionState()
		st.TransactionalID, st.ProducerID, st.TransactionState = d.TransactionalID, d.ProducerID, string(d.State)
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return respond(resp)
}

func handleDescribeTransactions(r *request) reply {
	req := r.msg.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		if !r.authorized(opDescribe, resTxnID, id) {
			st.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		d, ok := r.c.b.txns.Describe(id)
		if !ok {
			st.ErrorCode = kerr.TransactionalIDNotFound.Code
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		st.State, st.TimeoutMillis, st.ProducerID, st.ProducerEpoch = string(d.State), d.TimeoutMs, d.ProducerID, d.Epoch
		st.StartTimestamp = -1
		if !d.Started.IsZero() {
			st.StartTimestamp = d.Started.UnixMilli()
		}
		for _, tp := range d.Partitions {
			if !r.may(opDescribe, resTopic, tp.Topic) {
				continue // as Kafka: the topics the client may not describe are left out
			}
			if n := len(st.Topics); n == 0 || st.Topics[n-1].Topic != tp.Topic {
				t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				t.Topic = tp.Topic
				st.Topics = append(st.Topics, t)
			}
			st.Topics[len(st.Topics)-1].Partitions = append(st.Topics[len(st.Topics)-1].Partitions, tp.Partition)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return respond(resp)
}

func handleDescribeProducers(r *request) reply {
	req := r.msg.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		allowed := r.authorized(opRead, resTopic, rt.Topic)
		for _, part := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = part
			if !allowed {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := r.c.b.topics.partition(rt.Topic, part)
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			for _, pi := range p.ActiveProducers() {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch, ap.LastSequence = pi.ProducerID, int32(pi.Epoch), pi.LastSequence
				ap.LastTimestamp, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = pi.LastSeenMs, 0, pi.TxnStartOffset
				sp.ActiveProducers = append(sp.ActiveProducers, ap)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}
