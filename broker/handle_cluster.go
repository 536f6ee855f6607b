package broker

import (
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// The cluster APIs of a one-node cluster: DescribeCluster, ElectLeaders and
// partition reassignment. The broker is the only replica and leader of every
// partition, so there is never a leader to elect or a replica to move; the
// requests are validated and answered with the codes a one-broker Kafka
// gives, so admin tools get an answer instead of a closed connection.

// clusterOps are the operations Kafka reports on the cluster resource
// (DescribeCluster's ClusterAuthorizedOperations).
var clusterOps = []acl.Operation{
	kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
	kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter,
	kmsg.ACLOperationDescribe,
}

// notRequestedOps is Kafka's value of an authorized-operations field the
// client did not ask for.
const notRequestedOps = math.MinInt32

func handleDescribeCluster(r *request) reply {
	req := r.msg.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	b := r.c.b
	resp.EndpointType = req.EndpointType
	// v0 has no endpoint type; 1 asks for brokers, 2 for KRaft controllers,
	// which this broker is not.
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.MismatchedEndpointType.Code
		resp.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("endpoint type %d asked of a broker; the built-in broker answers endpoint type 1 (brokers)", req.EndpointType))
		return respond(resp)
	}
	host, port := r.c.advertised()
	node := kmsg.NewDescribeClusterResponseBroker()
	node.NodeID, node.Host, node.Port = b.opts.NodeID, host, port
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{node}
	resp.ClusterID = b.clusterID
	// A KRaft broker names a live broker as the controller, since clients
	// cannot reach the controllers themselves; here that is this node.
	resp.ControllerID = b.opts.NodeID
	resp.ClusterAuthorizedOperations = notRequestedOps
	if req.IncludeClusterAuthorizedOperations {
		var ops int32
		for _, op := range clusterOps {
			if r.may(op, resCluster, acl.ClusterName) {
				ops |= 1 << op
			}
		}
		resp.ClusterAuthorizedOperations = ops
	}
	return respond(resp)
}

// partitionSeen tracks the partitions a request names, for Kafka's
// refusal of a partition named twice.
type partitionSeen map[string]map[int32]int

func (s partitionSeen) add(topic string, p int32) {
	if s[topic] == nil {
		s[topic] = map[int32]int{}
	}
	s[topic][p]++
}

// exists reports whether topic has partition p.
func (b *Broker) partitionExists(topic string, p int32) bool {
	return b.topics.partition(topic, p) != nil
}

func handleElectLeaders(r *request) reply {
	req := r.msg.(*kmsg.ElectLeadersRequest)
	resp := req.ResponseKind().(*kmsg.ElectLeadersResponse)
	b := r.c.b
	allowed := r.authorizedCluster(opAlter)
	if !allowed {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
	}
	// Topics null asks for every partition whose leader is not the
	// preferred one: none, so the answer lists nothing, as Kafka leaves out
	// ELECTION_NOT_NEEDED when the client named no partitions.
	seen := partitionSeen{}
	for _, rt := range req.Topics {
		for _, p := range rt.Partitions {
			seen.add(rt.Topic, p)
		}
	}
	for _, rt := range req.Topics {
		st := kmsg.NewElectLeadersResponseTopic()
		st.Topic = rt.Topic
		for _, p := range rt.Partitions {
			sp := kmsg.NewElectLeadersResponseTopicPartition()
			sp.Partition = p
			var err error
			switch {
			case !allowed:
				err = errorf(kerr.ClusterAuthorizationFailed, "electing leaders needs ALTER on the cluster")
			case seen[rt.Topic][p] > 1:
				err = errorf(kerr.InvalidRequest, "partition %s-%d is named more than once", rt.Topic, p)
			case !b.partitionExists(rt.Topic, p):
				err = errorf(kerr.UnknownTopicOrPartition, "partition %s-%d does not exist", rt.Topic, p)
			default:
				err = errorf(kerr.ElectionNotNeeded, "node %d, the only replica, already leads %s-%d", b.opts.NodeID, rt.Topic, p)
			}
			sp.ErrorCode, sp.ErrorMessage = codeOf(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}

func handleAlterPartitionAssignments(r *request) reply {
	req := r.msg.(*kmsg.AlterPartitionAssignmentsRequest)
	resp := req.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	b := r.c.b
	resp.AllowReplicationFactorChange = req.AllowReplicationFactorChange
	if !r.authorizedCluster(opAlter) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("reassigning partitions needs ALTER on the cluster")
		return respond(resp)
	}
	seen := partitionSeen{}
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			seen.add(rt.Topic, rp.Partition)
		}
	}
	for _, rt := range req.Topics {
		st := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode, sp.ErrorMessage = codeOf(b.reassign(rt.Topic, rp, seen))
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}

// reassign validates one partition's reassignment. The only replica set a
// one-node cluster has is [node], which is where every partition is: a
// reassignment to it is done at once, anything else is refused.
func (b *Broker) reassign(topic string, rp kmsg.AlterPartitionAssignmentsRequestTopicPartition, seen partitionSeen) error {
	node := b.opts.NodeID
	switch {
	case seen[topic][rp.Partition] > 1:
		return errorf(kerr.InvalidRequest, "partition %s-%d is named more than once", topic, rp.Partition)
	case !b.partitionExists(topic, rp.Partition):
		return errorf(kerr.UnknownTopicOrPartition, "partition %s-%d does not exist", topic, rp.Partition)
	case rp.Replicas == nil:
		// A cancellation: nothing is ever in progress.
		return errorf(kerr.NoReassignmentInProgress, "no reassignment of %s-%d is in progress", topic, rp.Partition)
	case len(rp.Replicas) == 0:
		return errorf(kerr.InvalidReplicaAssignment, "the replica list of %s-%d is empty", topic, rp.Partition)
	}
	dup := map[int32]bool{}
	for _, id := range rp.Replicas {
		if dup[id] {
			return errorf(kerr.InvalidReplicaAssignment, "replica %d is named twice for %s-%d", id, topic, rp.Partition)
		}
		dup[id] = true
		if id != node {
			return errorf(kerr.InvalidReplicaAssignment, "broker %d does not exist: the built-in broker is a one-node cluster (node %d); partitions cannot move", id, node)
		}
	}
	return nil
}

func handleListPartitionReassignments(r *request) reply {
	req := r.msg.(*kmsg.ListPartitionReassignmentsRequest)
	resp := req.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	if !r.authorizedCluster(opDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("listing reassignments needs DESCRIBE on the cluster")
	}
	// Nothing is ever being reassigned: the list is empty.
	return respond(resp)
}
