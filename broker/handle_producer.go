package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleInitProducerID gives an idempotent producer a fresh id at epoch 0.
// As Kafka does without a transactional id, it ignores the id and epoch a
// KIP-360 client sends to recover from a sequence error: a new id starts
// every partition's sequence at 0 just as an epoch bump would, and needs no
// per-id record of the last epoch handed out. With a transactional id the
// transaction coordinator answers (handle_txn.go).
func handleInitProducerID(r *request) reply {
	req := r.msg.(*kmsg.InitProducerIDRequest)
	if req.TransactionalID != nil {
		return initTransactional(r, req)
	}
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	b := r.c.b
	id, err := b.producerIDs.allocate()
	if err != nil {
		b.log.Error("cannot allocate a producer id", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return respond(resp)
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	b.metrics.producerIDs.Inc()
	return respond(resp)
}
