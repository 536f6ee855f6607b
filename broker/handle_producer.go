package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// handleInitProducerID gives an idempotent producer a fresh id at epoch 0.
// As Kafka does without a transactional id, it ignores the id and epoch a
// KIP-360 client sends to recover from a sequence error: a new id starts
// every partition's sequence at 0 just as an epoch bump would, and needs no
// per-id record of the last epoch handed out. With a transactional id the
// transaction coordinator answers (handle_txn.go).
func handleInitProducerID(r *request) reply {
	req := r.msg.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	b := r.c.b
	if req.TransactionalID != nil {
		if !r.authorized(opWrite, resTxnID, *req.TransactionalID) {
			resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			return respond(resp)
		}
		return initTransactional(r, req)
	}
	// An idempotent producer: IDEMPOTENT_WRITE on the cluster, or, since
	// Kafka 3.0 (KIP-679), WRITE on any topic.
	if b.authz != nil && !r.may(opIdempotentWrite, resCluster, acl.ClusterName) &&
		!b.authz.AuthorizeAny(r.c.principal, r.c.host, opWrite, resTopic) && !r.authorizedCluster(opIdempotentWrite) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
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
