package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleInitProducerID gives an idempotent producer a fresh id at epoch 0.
// As Kafka does without a transactional id, it ignores the id and epoch a
// KIP-360 client sends to recover from a sequence error: a new id starts
// every partition's sequence at 0 just as an epoch bump would, and needs no
// per-id record of the last epoch handed out.
func handleInitProducerID(r *request) reply {
	req := r.msg.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	b := r.c.b
	if req.TransactionalID != nil {
		// The response has no message field, so the reason goes to the
		// log; INVALID_REQUEST is not retriable, so the client stops
		// instead of retrying for its whole timeout.
		r.c.log.Warn("InitProducerId with a transactional id refused: the built-in broker does not support transactions yet; produce without a transactional id (idempotence works), or use an external Kafka cluster",
			"transactional_id", *req.TransactionalID, "client_id", r.clientID)
		resp.ErrorCode = kerr.InvalidRequest.Code
		return respond(resp)
	}
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
