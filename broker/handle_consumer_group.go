package broker

import (
	"crypto/rand"
	"encoding/base64"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/group"
)

// Consumer-protocol groups (KIP-848). The state machine is in
// broker/group/consumer.go; these handlers translate kmsg requests to it.
// Unlike JoinGroup, a heartbeat never waits: the coordinator answers with
// the member's next step at once.

func handleConsumerGroupHeartbeat(r *request) reply {
	req := r.msg.(*kmsg.ConsumerGroupHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	if !r.authorized(opRead, resGroup, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return respond(resp)
	}
	// As Kafka: subscribing names only topics the member may describe,
	// else TOPIC_AUTHORIZATION_FAILED (a regex is resolved without that
	// check; see ARCHITECTURE.md).
	if r.c.b.authz != nil {
		for _, t := range req.SubscribedTopicNames {
			if !r.may(opDescribe, resTopic, t) {
				resp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.ErrorMessage = kmsg.StringPtr("subscribing to topics the member may not describe: " + t)
				return respond(resp)
			}
		}
	}
	hr := group.HeartbeatRequest{
		Group: req.Group, MemberID: req.MemberID, MemberEpoch: req.MemberEpoch,
		InstanceID: req.InstanceID, RackID: req.RackID, RebalanceTimeout: req.RebalanceTimeoutMillis,
		SubscribedTopics: req.SubscribedTopicNames, SubscribedRegex: req.SubscribedTopicRegex,
		ServerAssignor: req.ServerAssignor, ClientID: r.clientID, ClientHost: clientHost(r),
	}
	if req.Version == 0 && req.MemberEpoch == 0 && req.MemberID == "" {
		// v0 members let the coordinator name them; v1 members name
		// themselves (a UUID).
		hr.MemberID = newConsumerMemberID()
	}
	if req.Topics != nil {
		hr.Owned = make([]group.TopicPartitions, 0, len(req.Topics))
		for _, t := range req.Topics {
			hr.Owned = append(hr.Owned, group.TopicPartitions{ID: t.TopicID, Partitions: t.Partitions})
		}
	}
	res := r.c.b.groups.ConsumerHeartbeat(hr)
	resp.ErrorCode = code(res.Err)
	if res.Err != nil {
		resp.ErrorMessage = kmsg.StringPtr(res.Message)
		return respond(resp)
	}
	resp.MemberID = kmsg.StringPtr(res.MemberID)
	resp.MemberEpoch = res.MemberEpoch
	resp.HeartbeatIntervalMillis = int32(res.HeartbeatInterval.Milliseconds())
	if res.SendAssignment {
		a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
		a.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
		for _, t := range res.Assignment {
			at := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
			at.TopicID, at.Partitions = t.ID, t.Partitions
			a.Topics = append(a.Topics, at)
		}
		resp.Assignment = &a
	}
	return respond(resp)
}

// newConsumerMemberID makes a member id for a v0 join, which leaves it to
// the coordinator; the same form v1 clients make for themselves.
func newConsumerMemberID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func handleConsumerGroupDescribe(r *request) reply {
	req := r.msg.(*kmsg.ConsumerGroupDescribeRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewConsumerGroupDescribeResponseGroup()
		rg.Group = name
		if !r.authorized(opDescribe, resGroup, name) {
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		if name == "" {
			rg.ErrorCode = kerr.InvalidGroupID.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		d, err, msg := r.c.b.groups.DescribeConsumer(name)
		if err != nil {
			rg.ErrorCode, rg.ErrorMessage = err.Code, kmsg.StringPtr(msg)
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		rg.State, rg.Epoch, rg.AssignmentEpoch, rg.AssignorName = string(d.State), d.Epoch, d.AssignmentEpoch, d.Assignor
		if req.IncludeAuthorizedOperations {
			rg.AuthorizedOperations = r.authorizedOps(resGroup, name, groupOps)
		}
		for _, m := range d.Members {
			rm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
			rm.MemberID, rm.InstanceID, rm.RackID = m.ID, strPtr(m.InstanceID), strPtr(m.RackID)
			rm.MemberEpoch, rm.ClientID, rm.ClientHost = m.Epoch, m.ClientID, m.ClientHost
			rm.SubscribedTopics = m.SubscribedTopics
			if rm.SubscribedTopics == nil {
				rm.SubscribedTopics = []string{}
			}
			rm.SubscribedTopicRegex = strPtr(m.SubscribedRegex)
			rm.Assignment = wireAssignment(m.Assignment)
			rm.TargetAssignment = wireAssignment(m.Target)
			rm.MemberType = 1 // a consumer-protocol member; classic members are never mixed in
			rg.Members = append(rg.Members, rm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return respond(resp)
}

func wireAssignment(tps []group.TopicPartitions) kmsg.Assignment {
	a := kmsg.NewAssignment()
	a.TopicPartitions = []kmsg.AssignmentTopicPartition{}
	for _, t := range tps {
		at := kmsg.NewAssignmentTopicPartition()
		at.TopicID, at.Topic, at.Partitions = t.ID, t.Topic, t.Partitions
		a.TopicPartitions = append(a.TopicPartitions, at)
	}
	return a
}
