package broker

import (
	"log/slog"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// Authorization (ARCHITECTURE §12). With Options.ACL the broker holds an
// acl.Authorizer and every handler checks its request as Kafka's KafkaApis
// does, answering Kafka's *_AUTHORIZATION_FAILED codes for what is denied;
// without it b.authz is nil and each check is one nil test.
//
// Checks run in the synchronous part of a handler, on the connection's
// reader, where the principal is set (authentication changes it there);
// replies that run later on the writer capture the decisions.

// Short names for the resource types and operations the handlers check.
const (
	resTopic   = kmsg.ACLResourceTypeTopic
	resGroup   = kmsg.ACLResourceTypeGroup
	resCluster = kmsg.ACLResourceTypeCluster
	resTxnID   = kmsg.ACLResourceTypeTransactionalId

	opRead            = kmsg.ACLOperationRead
	opWrite           = kmsg.ACLOperationWrite
	opCreate          = kmsg.ACLOperationCreate
	opDelete          = kmsg.ACLOperationDelete
	opAlter           = kmsg.ACLOperationAlter
	opDescribe        = kmsg.ACLOperationDescribe
	opDescribeConfigs = kmsg.ACLOperationDescribeConfigs
	opAlterConfigs    = kmsg.ACLOperationAlterConfigs
	opIdempotentWrite = kmsg.ACLOperationIdempotentWrite
)

// may reports whether the request's principal may do op on the resource,
// quietly: for filtering what is listed, as Kafka does not log those.
func (r *request) may(op acl.Operation, rt acl.ResourceType, name string) bool {
	a := r.c.b.authz
	return a == nil || a.Authorize(r.c.principal, r.c.host, op, rt, name)
}

// authorized is may for a resource the client named: a denial is logged
// (at info at most once per txnErrorLogInterval, else at debug) so an
// operator sees which ACL is missing.
func (r *request) authorized(op acl.Operation, rt acl.ResourceType, name string) bool {
	if r.may(op, rt, name) {
		return true
	}
	lvl := slog.LevelDebug
	if r.c.b.deniedLog.allow(time.Now()) {
		lvl = slog.LevelInfo
	}
	r.c.log.Log(r.c.ctx, lvl, "request denied by ACLs", "principal", r.c.principal, "host", r.c.host,
		"request", kmsg.NameForKey(r.key), "operation", op.String(), "resource", rt.String(), "name", name)
	return false
}

// authorizedCluster checks op on the cluster resource.
func (r *request) authorizedCluster(op acl.Operation) bool {
	return r.authorized(op, resCluster, acl.ClusterName)
}

// mayCreateTopic is Kafka's rule for creating a topic: CREATE on the
// cluster, or on the topic.
func (r *request) mayCreateTopic(name string) bool {
	return r.may(opCreate, resCluster, acl.ClusterName) || r.authorized(opCreate, resTopic, name)
}

// hostOf is the client's address as ACL hosts name it: the IP alone.
func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// topicDecisions remembers one check per topic name within a request,
// whose topics may repeat across partitions. Nil (no authorizer) allows
// all without a map.
type topicDecisions map[string]bool

func (r *request) topicDecisions() topicDecisions {
	if r.c.b.authz == nil {
		return nil
	}
	return topicDecisions{}
}

// allowed checks (once) whether the request may do op on topic.
func (d topicDecisions) allowed(r *request, op acl.Operation, topic string, quiet bool) bool {
	if d == nil {
		return true
	}
	ok, seen := d[topic]
	if !seen {
		if quiet {
			ok = r.may(op, resTopic, topic)
		} else {
			ok = r.authorized(op, resTopic, topic)
		}
		d[topic] = ok
	}
	return ok
}

// The operations topics and groups have, as Kafka lists them for KIP-430's
// authorized-operations bitfields (the cluster's: clusterOps).
var (
	topicOps = []acl.Operation{opRead, opWrite, opCreate, opDelete, opAlter, opDescribe, opDescribeConfigs, kmsg.ACLOperationAlterConfigs}
	groupOps = []acl.Operation{opRead, opDescribe, opDelete}
)

// authorizedOps is KIP-430's bitfield (bit 1<<code) of the operations
// among ops the request's principal may do on the resource; without an
// authorizer, all of them, as Kafka answers.
func (r *request) authorizedOps(rt acl.ResourceType, name string, ops []acl.Operation) int32 {
	var bits int32
	for _, op := range ops {
		if r.may(op, rt, name) {
			bits |= 1 << op
		}
	}
	return bits
}
