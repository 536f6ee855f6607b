package broker

import (
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
	"github.com/sluicehq/sluice/broker/group"
)

// Consumer-group APIs (classic protocol). The coordinator in broker/group
// holds the state machine; these handlers translate kmsg requests to it.
// Replies that wait for a rebalance block on the connection's writer, as
// Kafka holds a JoinGroup response until the join phase ends.

func code(err *kerr.Error) int16 {
	if err == nil {
		return 0
	}
	return err.Code
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func handleFindCoordinator(r *request) reply {
	req := r.msg.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := r.c.advertised()
	node := r.c.b.opts.NodeID
	// Groups (type 0) and transactions (type 1) are both coordinated here;
	// finding one needs DESCRIBE on it.
	var errMsg *string
	errFor := func(typ int8, key string) int16 {
		switch {
		case typ == 0 && !r.authorized(opDescribe, resGroup, key):
			return kerr.GroupAuthorizationFailed.Code
		case typ == 1 && !r.authorized(opDescribe, resTxnID, key):
			return kerr.TransactionalIDAuthorizationFailed.Code
		case typ != 0 && typ != 1:
			errMsg = kmsg.StringPtr("coordinator type must be 0 (group) or 1 (transaction)")
			return kerr.InvalidRequest.Code
		}
		return 0
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key, c.NodeID, c.Host, c.Port = key, node, host, port
			c.ErrorCode = errFor(req.CoordinatorType, key)
			c.ErrorMessage = errMsg
			if c.ErrorCode != 0 {
				c.NodeID, c.Host, c.Port = -1, "", -1
			}
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return respond(resp)
	}
	resp.NodeID, resp.Host, resp.Port = node, host, port
	resp.ErrorCode = errFor(req.CoordinatorType, req.CoordinatorKey)
	resp.ErrorMessage = errMsg
	if resp.ErrorCode != 0 {
		resp.NodeID, resp.Host, resp.Port = -1, "", -1
	}
	return respond(resp)
}

func clientHost(r *request) string {
	if a, ok := r.c.nc.RemoteAddr().(*net.TCPAddr); ok {
		return "/" + a.IP.String()
	}
	return r.c.nc.RemoteAddr().String()
}

func handleJoinGroup(r *request) reply {
	req := r.msg.(*kmsg.JoinGroupRequest)
	if !r.authorized(opRead, resGroup, req.Group) {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation = kerr.GroupAuthorizationFailed.Code, -1
		if req.Version < 7 {
			resp.Protocol = kmsg.StringPtr("") // nullable from v7 only
		}
		return respond(resp)
	}
	jr := group.JoinRequest{
		Group: req.Group, MemberID: req.MemberID, InstanceID: str(req.InstanceID),
		ClientID: r.clientID, ClientHost: clientHost(r), ProtocolType: req.ProtocolType,
		Session:              time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
		Rebalance:            time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond,
		RequireKnownMemberID: req.Version >= 4,
	}
	if req.Version == 0 {
		jr.Rebalance = jr.Session
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, group.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	ch := r.c.b.groups.Join(jr)
	return func() *outgoing {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		var res group.JoinResult
		select {
		case res = <-ch:
		case <-r.c.ctx.Done():
			res = group.JoinResult{Err: kerr.RebalanceInProgress, Generation: -1}
		}
		resp.ErrorCode = code(res.Err)
		resp.Generation = res.Generation
		resp.ProtocolType = strPtr(res.ProtocolType)
		resp.Protocol = kmsg.StringPtr(res.Protocol)
		resp.LeaderID, resp.MemberID = res.LeaderID, res.MemberID
		for _, m := range res.Members {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID, rm.InstanceID, rm.ProtocolMetadata = m.ID, strPtr(m.InstanceID), m.Metadata
			resp.Members = append(resp.Members, rm)
		}
		return &outgoing{resp: resp}
	}
}

func handleSyncGroup(r *request) reply {
	req := r.msg.(*kmsg.SyncGroupRequest)
	if !r.authorized(opRead, resGroup, req.Group) {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return respond(resp)
	}
	sr := group.SyncRequest{Group: req.Group, MemberID: req.MemberID, InstanceID: str(req.InstanceID),
		Generation: req.Generation, ProtocolType: str(req.ProtocolType), Protocol: str(req.Protocol),
		Assignments: map[string][]byte{}}
	for _, a := range req.GroupAssignment {
		sr.Assignments[a.MemberID] = a.MemberAssignment
	}
	ch := r.c.b.groups.Sync(sr)
	return func() *outgoing {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		var res group.SyncResult
		select {
		case res = <-ch:
		case <-r.c.ctx.Done():
			res = group.SyncResult{Err: kerr.RebalanceInProgress}
		}
		resp.ErrorCode = code(res.Err)
		resp.ProtocolType, resp.Protocol = strPtr(res.ProtocolType), strPtr(res.Protocol)
		resp.MemberAssignment = res.Assignment
		return &outgoing{resp: resp}
	}
}

func handleHeartbeat(r *request) reply {
	req := r.msg.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if !r.authorized(opRead, resGroup, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return respond(resp)
	}
	resp.ErrorCode = code(r.c.b.groups.Heartbeat(req.Group, req.MemberID, str(req.InstanceID), req.Generation))
	return respond(resp)
}

func handleLeaveGroup(r *request) reply {
	req := r.msg.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if !r.authorized(opRead, resGroup, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return respond(resp)
	}
	if req.Version < 3 {
		errs := r.c.b.groups.Leave(req.Group, []string{req.MemberID}, nil)
		resp.ErrorCode = code(errs[0])
		return respond(resp)
	}
	ids := make([]string, len(req.Members))
	insts := make([]string, len(req.Members))
	for i, m := range req.Members {
		ids[i], insts[i] = m.MemberID, str(m.InstanceID)
	}
	errs := r.c.b.groups.Leave(req.Group, ids, insts)
	for i, m := range req.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID, rm.ErrorCode = m.MemberID, m.InstanceID, code(errs[i])
		resp.Members = append(resp.Members, rm)
	}
	return respond(resp)
}

func handleOffsetCommit(r *request) reply {
	req := r.msg.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	cr := group.CommitRequest{Group: req.Group, MemberID: req.MemberID, InstanceID: str(req.InstanceID),
		Generation: req.Generation, Version: req.Version}
	if req.Version == 0 {
		cr.Generation = -1
	}
	if !r.authorized(opRead, resGroup, req.Group) {
		for _, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.GroupAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return respond(resp)
	}
	// Offsets for partitions the client may not read or that do not
	// exist are refused one by one, as Kafka does; the rest commit
	// together.
	refused := map[group.TopicPartition]int16{}
	d := r.topicDecisions()
	for _, t := range req.Topics {
		tp := r.c.b.topics.get(t.Topic)
		allowed := d.allowed(r, opRead, t.Topic, false)
		for _, p := range t.Partitions {
			key := group.TopicPartition{Topic: t.Topic, Partition: p.Partition}
			if !allowed {
				refused[key] = kerr.TopicAuthorizationFailed.Code
				continue
			}
			if tp == nil || p.Partition < 0 || int(p.Partition) >= len(tp.parts) {
				refused[key] = kerr.UnknownTopicOrPartition.Code
				continue
			}
			le := int32(-1)
			if req.Version >= 6 {
				le = p.LeaderEpoch
			}
			cr.Offsets = append(cr.Offsets, group.Offset{TopicPartition: key, Offset: p.Offset,
				LeaderEpoch: le, Metadata: str(p.Metadata)})
		}
	}
	err := r.c.b.groups.Commit(cr)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = code(err)
			if c, ok := refused[group.TopicPartition{Topic: t.Topic, Partition: p.Partition}]; ok {
				rp.ErrorCode = c
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return respond(resp)
}

func handleOffsetFetch(r *request) reply {
	req := r.msg.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		// v8 batches groups; v9 names the member and its epoch, checked
		// for consumer-protocol groups (KIP-848).
		for _, rg := range req.Groups {
			var topics []offsetFetchTopic
			if rg.Topics != nil {
				topics = []offsetFetchTopic{}
				for _, t := range rg.Topics {
					topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
				}
			}
			memberID, epoch := "", int32(-1)
			if req.Version >= 9 {
				memberID, epoch = str(rg.MemberID), rg.MemberEpoch
			}
			ft, errCode := fetchGroupOffsets(r, rg.Group, topics, req.RequireStable, memberID, epoch)
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group, g.ErrorCode = rg.Group, errCode
			for _, t := range ft {
				gt := kmsg.NewOffsetFetchResponseGroupTopic()
				gt.Topic = t.Topic
				for _, p := range t.Partitions {
					gp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					gp.Partition, gp.Offset, gp.LeaderEpoch, gp.Metadata, gp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
					gt.Partitions = append(gt.Partitions, gp)
				}
				g.Topics = append(g.Topics, gt)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return respond(resp)
	}
	var topics []offsetFetchTopic
	if req.Topics != nil {
		topics = []offsetFetchTopic{}
		for _, t := range req.Topics {
			topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
		}
	}
	ft, errCode := fetchGroupOffsets(r, req.Group, topics, req.RequireStable, "", -1)
	if errCode == kerr.GroupAuthorizationFailed.Code && req.Version < 2 {
		// v0 and v1 have no top-level error: each partition asked says it.
		for _, t := range req.Topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.ErrorCode = p, -1, errCode
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return respond(resp)
	}
	resp.ErrorCode = errCode
	resp.Topics = ft
	return respond(resp)
}

type offsetFetchTopic struct {
	topic string
	parts []int32
}

// fetchGroupOffsets answers one group of an OffsetFetch: topics nil asks
// for every committed offset. memberID and epoch are OffsetFetch v9's
// (epoch -1: no member named).
func fetchGroupOffsets(r *request, groupName string, topics []offsetFetchTopic, requireStable bool, memberID string, epoch int32) ([]kmsg.OffsetFetchResponseTopic, int16) {
	if !r.authorized(opDescribe, resGroup, groupName) {
		return nil, kerr.GroupAuthorizationFailed.Code
	}
	if err := r.c.b.groups.CheckFetch(groupName, memberID, epoch); err != nil {
		return nil, err.Code
	}
	// Topics the client may not describe: named, their partitions say
	// so; asked for all, they are left out (as Kafka).
	d := r.topicDecisions()
	var parts []group.TopicPartition
	if topics != nil {
		parts = []group.TopicPartition{}
		for _, t := range topics {
			for _, p := range t.parts {
				parts = append(parts, group.TopicPartition{Topic: t.topic, Partition: p})
			}
		}
	}
	var out []kmsg.OffsetFetchResponseTopic
	offsets := r.c.b.groups.Fetch(groupName, parts)
	byTopic := map[string]int{}
	for _, o := range offsets {
		allowed := d.allowed(r, opDescribe, o.Topic, topics == nil)
		if !allowed && topics == nil {
			continue
		}
		i, ok := byTopic[o.Topic]
		if !ok {
			i = len(out)
			byTopic[o.Topic] = i
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = o.Topic
			out = append(out, rt)
		}
		rp := kmsg.NewOffsetFetchResponseTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = o.Partition, o.Offset, o.LeaderEpoch
		rp.Metadata = kmsg.StringPtr(o.Metadata)
		if !allowed {
			rp.Offset, rp.LeaderEpoch, rp.Metadata = -1, -1, kmsg.StringPtr("")
			rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
		} else if requireStable && r.c.b.txns.PendingOffset(groupName, o.TopicPartition) {
			// A transaction holds an offset for it that is not decided
			// yet (KIP-447); the client retries.
			rp.ErrorCode = kerr.UnstableOffsetCommit.Code
		}
		out[i].Partitions = append(out[i].Partitions, rp)
	}
	return out, 0
}

func handleListGroups(r *request) reply {
	req := r.msg.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	want := map[string]bool{}
	for _, s := range req.StatesFilter {
		want[s] = true
	}
	// v5 filters by type too, case-insensitively as Kafka does.
	wantType := map[string]bool{}
	for _, t := range req.TypesFilter {
		wantType[strings.ToLower(t)] = true
	}
	// DESCRIBE on the cluster lists every group; else those the client
	// may describe.
	all := r.c.b.authz == nil || r.may(opDescribe, resCluster, acl.ClusterName)
	for _, g := range r.c.b.groups.List() {
		if len(want) > 0 && !want[string(g.State)] || len(wantType) > 0 && !wantType[g.Type] {
			continue
		}
		if !all && !r.may(opDescribe, resGroup, g.Group) {
			continue
		}
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group, rg.ProtocolType, rg.GroupState, rg.GroupType = g.Group, g.ProtocolType, string(g.State), g.Type
		resp.Groups = append(resp.Groups, rg)
	}
	return respond(resp)
}

func handleDescribeGroups(r *request) reply {
	req := r.msg.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		if !r.authorized(opDescribe, resGroup, name) {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group, rg.ErrorCode = name, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		d, _ := r.c.b.groups.Describe(name)
		rg := kmsg.NewDescribeGroupsResponseGroup()
		if req.IncludeAuthorizedOperations {
			rg.AuthorizedOperations = r.authorizedOps(resGroup, name, groupOps)
		}
		rg.Group, rg.State, rg.ProtocolType, rg.Protocol = name, string(d.State), d.ProtocolType, d.Protocol
		for _, m := range d.Members {
			rm := kmsg.NewDescribeGroupsResponseGroupMember()
			rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.ID, strPtr(m.InstanceID), m.ClientID, m.ClientHost
			rm.ProtocolMetadata, rm.MemberAssignment = m.Metadata, m.Assignment
			rg.Members = append(rg.Members, rm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return respond(resp)
}

func handleDeleteGroups(r *request) reply {
	req := r.msg.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		if !r.authorized(opDelete, resGroup, name) {
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
		} else {
			rg.ErrorCode = code(r.c.b.groups.Delete(name))
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return respond(resp)
}
