package broker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// TestDescribeCluster: the node and cluster id a one-node cluster reports,
// at each version, with the operations the client may do on the cluster
// when it asks, and the refusal of a controller endpoint.
func TestDescribeCluster(t *testing.T) {
	b, addr := testBroker(t, Options{NodeID: 7})
	cl := newKgo(t, addr)
	_, port, _ := net.SplitHostPort(addr)
	for _, v := range []int16{0, 1, 2} {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.Version, req.EndpointType = v, 1
		req.IncludeClusterAuthorizedOperations = v == 1
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if resp.ErrorCode != 0 || resp.ClusterID != b.ClusterID() || resp.ControllerID != 7 || len(resp.Brokers) != 1 ||
			resp.Brokers[0].NodeID != 7 || resp.Brokers[0].Host != "127.0.0.1" || itoa(resp.Brokers[0].Port) != port {
			t.Fatalf("v%d: %+v, want node 7 at %s in cluster %s", v, resp, addr, b.ClusterID())
		}
		// No authorizer: every cluster operation is allowed.
		want := int32(notRequestedOps)
		if req.IncludeClusterAuthorizedOperations {
			want = 0
			for _, op := range clusterOps {
				want |= 1 << op
			}
		}
		if resp.ClusterAuthorizedOperations != want {
			t.Fatalf("v%d: authorized operations %b, want %b", v, resp.ClusterAuthorizedOperations, want)
		}
	}
	// Metadata and the leader of every partition name the same node.
	createTopic(t, cl, "led", 2)
	md, err := kadm.NewClient(cl).Metadata(ctxT(t), "led")
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].NodeID != 7 || md.Controller != 7 {
		t.Fatalf("metadata brokers %+v, controller %d; want node 7", md.Brokers, md.Controller)
	}
	for _, p := range md.Topics["led"].Partitions {
		if p.Leader != 7 || len(p.Replicas) != 1 || p.Replicas[0] != 7 {
			t.Fatalf("partition %+v: want leader and replica 7", p)
		}
	}
	if _, err := Open(t.TempDir(), Options{NodeID: -1}); err == nil || !strings.Contains(err.Error(), "0 or more") {
		t.Fatalf("node id -1: %v, want a refusal", err)
	}
	req := kmsg.NewPtrDescribeClusterRequest()
	req.Version, req.EndpointType = 1, 2
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil || resp.ErrorCode != kerr.MismatchedEndpointType.Code {
		t.Fatalf("controller endpoint: %+v %v, want MISMATCHED_ENDPOINT_TYPE", resp, err)
	}
}

// TestElectAndReassignKadm drives the election and reassignment APIs with
// kadm, as kafka-leader-election.sh and kafka-reassign-partitions.sh would.
func TestElectAndReassignKadm(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	createTopic(t, cl, "t", 2)
	adm := kadm.NewClient(cl)
	ctx := ctxT(t)

	res, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{"t": {0: {}, 1: {}}, "gone": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int32{0, 1} {
		if r := res["t"][p]; !errors.Is(r.Err, kerr.ElectionNotNeeded) {
			t.Fatalf("elect t-%d: %+v, want ELECTION_NOT_NEEDED", p, r)
		}
	}
	if r := res["gone"][0]; !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("elect gone-0: %+v, want UNKNOWN_TOPIC_OR_PARTITION", r)
	}
	// Every partition: none needs an election, and none is listed.
	if res, err := adm.ElectLeaders(ctx, kadm.ElectLiveReplica, nil); err != nil || len(res) != 0 {
		t.Fatalf("elect all: %v %v, want no partitions", res, err)
	}

	var req kadm.AlterPartitionAssignmentsReq
	req.Assign("t", 0, []int32{0}) // where it is: done
	req.Assign("t", 1, []int32{1}) // a broker that does not exist
	req.Assign("gone", 0, []int32{0})
	req.CancelAssign("t", 0) // overrides the first: nothing in progress
	alt, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		topic string
		p     int32
		want  error
	}{{"t", 0, kerr.NoReassignmentInProgress}, {"t", 1, kerr.InvalidReplicaAssignment}, {"gone", 0, kerr.UnknownTopicOrPartition}} {
		if got := alt[c.topic][c.p].Err; !errors.Is(got, c.want) {
			t.Fatalf("reassign %s-%d: %v, want %v", c.topic, c.p, got, c.want)
		}
	}
	var same kadm.AlterPartitionAssignmentsReq
	same.Assign("t", 1, []int32{0})
	if alt, err := adm.AlterPartitionAssignments(ctx, same); err != nil || alt["t"][1].Err != nil {
		t.Fatalf("reassign t-1 to where it is: %+v %v, want done", alt, err)
	}
	if list, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"t": {0: {}}}); err != nil || len(list) != 0 {
		t.Fatalf("list reassignments: %v %v, want none", list, err)
	}
}

// TestElectAndReassignKafkaGo: kafka-go's admin client gets the same
// answers.
func TestElectAndReassignKafkaGo(t *testing.T) {
	_, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "kg", 1)
	c := &kafka.Client{Addr: kafka.TCP(addr)}
	ctx := ctxT(t)
	el, err := c.ElectLeaders(ctx, &kafka.ElectLeadersRequest{Topic: "kg", Partitions: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	if len(el.PartitionResults) != 1 || !errors.Is(el.PartitionResults[0].Error, kafka.ElectionNotNeeded) {
		t.Fatalf("kafka-go elect: %+v, want ELECTION_NOT_NEEDED", el)
	}
	re, err := c.AlterPartitionReassignments(ctx, &kafka.AlterPartitionReassignmentsRequest{
		Topic: "kg", Assignments: []kafka.AlterPartitionReassignmentsRequestAssignment{{PartitionID: 0, BrokerIDs: []int{0}}}})
	if err != nil || re.Error != nil || len(re.PartitionResults) != 1 || re.PartitionResults[0].Error != nil {
		t.Fatalf("kafka-go reassign to where it is: %+v %v, want done", re, err)
	}
	re, err = c.AlterPartitionReassignments(ctx, &kafka.AlterPartitionReassignmentsRequest{
		Topic: "kg", Assignments: []kafka.AlterPartitionReassignmentsRequestAssignment{{PartitionID: 0, BrokerIDs: []int{3}}}})
	if err != nil || len(re.PartitionResults) != 1 || !errors.Is(re.PartitionResults[0].Error, kafka.InvalidReplicaAssignment) {
		t.Fatalf("kafka-go reassign to broker 3: %+v %v, want INVALID_REPLICA_ASSIGNMENT", re, err)
	}
	ls, err := c.ListPartitionReassignments(ctx, &kafka.ListPartitionReassignmentsRequest{
		Topics: map[string]kafka.ListPartitionReassignmentsRequestTopic{"kg": {PartitionIndexes: []int{0}}}})
	if err != nil || ls.Error != nil || len(ls.Topics) != 0 {
		t.Fatalf("kafka-go list reassignments: %+v %v, want none", ls, err)
	}
}

// TestClusterAPIsNeedClusterACLs: with the authorizer on, election and
// reassignment need ALTER on the cluster and listing DESCRIBE, answered
// with CLUSTER_AUTHORIZATION_FAILED; DescribeCluster reports which
// cluster operations the client has.
func TestClusterAPIsNeedClusterACLs(t *testing.T) {
	b, addr := testBroker(t, Options{ACL: true})
	cl := newKgo(t, addr)
	for _, err := range b.authz.Create([]acl.Binding{
		allowB(resCluster, acl.ClusterName, anon, "*", opCreate),
		allowB(resTopic, "t", anon, "*", opDescribe),
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	createTopic(t, cl, "t", 1)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	res, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{"t": {0: {}}})
	if err == nil {
		err = res["t"][0].Err
	}
	if !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("elect without ALTER: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign("t", 0, []int32{0})
	if _, err := adm.AlterPartitionAssignments(ctx, req); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("reassign without ALTER: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	if _, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"t": {0: {}}}); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("list without DESCRIBE: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	dc := kmsg.NewPtrDescribeClusterRequest()
	dc.Version, dc.EndpointType, dc.IncludeClusterAuthorizedOperations = 1, 1, true
	resp, err := dc.RequestWith(ctx, cl)
	if err != nil || resp.ClusterAuthorizedOperations != 1<<opCreate {
		t.Fatalf("authorized operations %b (%v), want CREATE alone (%b)", resp.ClusterAuthorizedOperations, err, 1<<opCreate)
	}
}

func itoa(p int32) string {
	return (&net.TCPAddr{Port: int(p)}).String()[1:]
}
