package broker

import (
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/group"
	"github.com/sluicehq/sluice/broker/quota"
	"github.com/sluicehq/sluice/broker/storage"
)

// handleProduce appends on the reader (so one connection's batches keep
// their order) and, for acks=all, waits for the fsync on the writer, where
// it coalesces with the fsyncs of every other producer.
func handleProduce(r *request) reply {
	req := r.msg.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	rep := produce(r, req, resp)
	// The request's bytes count against the client's producer_byte_rate,
	// whatever became of them, as in Kafka.
	return r.throttle(r.throttleFor(quota.ProducerByteRate, float64(r.size)), resp, rep, quotaProduce)
}

func produce(r *request, req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse) reply {
	b := r.c.b
	now := time.Now()
	type pending struct {
		part   *storage.Partition
		ti, pi int // where its answer is in resp
		next   int64
		rp     *kmsg.ProduceResponseTopicPartition
	}
	var toSync []pending
	ackErr := req.Acks != 0 && req.Acks != 1 && req.Acks != -1
	if b.authz != nil && !ackErr && !produceAuthorizedTxn(r, req) {
		return failProduce(req, resp, kerr.TransactionalIDAuthorizationFailed.Code)
	}
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		allowed := ackErr || r.authorized(opWrite, resTopic, rt.Topic)
		t := b.topics.get(rt.Topic)
		if t == nil && !ackErr && allowed && b.opts.AutoCreateTopics && r.mayCreateTopic(rt.Topic) {
			b.topics.create(rt.Topic, -1, nil, false)
			t = b.topics.get(rt.Topic)
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case ackErr:
				sp.ErrorCode = kerr.InvalidRequiredAcks.Code
			case !allowed:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case isInternalTopic(rt.Topic):
				sp.ErrorCode, sp.ErrorMessage = codeOf(internalTopicError("produce"))
			case t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts):
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case t.parts[rp.Partition].Offline() != nil:
				// Logged when it went offline, not at every produce.
				sp.ErrorCode, sp.ErrorMessage = codeOf(t.parts[rp.Partition].Offline())
			default:
				if pid, epoch, txnl, ok := storage.BatchProducer(rp.Records); ok && txnl {
					// Only into a partition added to the producer's open
					// transaction, and only from its current epoch.
					tp := group.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}
					if err := b.txns.CheckProduce(pid, epoch, tp); err != nil {
						sp.ErrorCode = err.Code
						sp.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("transactional batch of producer %d epoch %d refused (%s): the producer must be a transactional id's current one, with this partition added to its open transaction (AddPartitionsToTxn)",
							pid, epoch, err.Message))
						break
					}
				}
				p := t.parts[rp.Partition]
				res, err := p.AppendBatches(rp.Records, now)
				if err != nil {
					sp.ErrorCode, sp.ErrorMessage = codeOf(err)
					if sp.ErrorCode == kerr.KafkaStorageError.Code {
						b.log.Error("append failed", "topic", rt.Topic, "partition", rp.Partition, "err", err)
					}
					break
				}
				if res.Duplicate {
					// A retry whose first try was written: answer as
					// that try would have been answered.
					b.metrics.duplicates.WithLabelValues(rt.Topic).Inc()
				} else {
					b.metrics.produced(rt.Topic, len(rp.Records))
				}
				sp.BaseOffset = res.Base
				sp.LogStartOffset = p.StartOffset()
				if req.Acks == -1 {
					toSync = append(toSync, pending{part: p, ti: len(resp.Topics), pi: len(st.Partitions), next: res.Next})
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if req.Acks == 0 {
		return func() *outgoing { return nil }
	}
	if len(toSync) == 0 {
		return respond(resp)
	}
	for i := range toSync {
		toSync[i].rp = &resp.Topics[toSync[i].ti].Partitions[toSync[i].pi]
	}
	return func() *outgoing {
		syncOne := func(s pending) {
			if err := s.part.Sync(s.next); err != nil {
				s.rp.ErrorCode, s.rp.ErrorMessage = codeOf(err)
				b.log.Error("fsync failed", "dir", s.part.Dir(), "err", err)
			}
		}
		// Partitions are separate files: fsync them at the same time so the
		// reply waits for the slowest, not the sum.
		var wg sync.WaitGroup
		for _, s := range toSync[1:] {
			wg.Go(func() { syncOne(s) })
		}
		syncOne(toSync[0])
		wg.Wait()
		return &outgoing{resp: resp}
	}
}

// produceAuthorizedTxn is Kafka's check before a produce: a request
// carrying transactional batches needs WRITE on its transactional id.
func produceAuthorizedTxn(r *request, req *kmsg.ProduceRequest) bool {
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			if _, _, txnl, ok := storage.BatchProducer(rp.Records); ok && txnl {
				return req.TransactionID != nil && r.authorized(opWrite, resTxnID, *req.TransactionID)
			}
		}
	}
	return true
}

// failProduce answers every partition of a produce with one error, as
// Kafka answers a request refused whole.
func failProduce(req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse, code int16) reply {
	if req.Acks == 0 {
		return func() *outgoing { return nil }
	}
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}
