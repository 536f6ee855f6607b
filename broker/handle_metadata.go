package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

func handleMetadata(r *request) reply {
	req := r.msg.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	b := r.c.b
	host, port := r.c.advertised()
	node := kmsg.NewMetadataResponseBroker()
	node.NodeID, node.Host, node.Port = b.opts.NodeID, host, port
	resp.Brokers = []kmsg.MetadataResponseBroker{node}
	resp.ClusterID = kmsg.StringPtr(b.clusterID)
	resp.ControllerID = b.opts.NodeID

	var topics []*topic
	var missing []string
	// v0 asks for all topics with an empty list; v1+ with null.
	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		topics = b.topics.list()
		if b.authz != nil {
			// Those the client may not describe are left out, silently.
			topics = slices.DeleteFunc(topics, func(t *topic) bool { return !r.may(opDescribe, resTopic, t.meta.Name) })
		}
		if b.authz == nil || r.may(opDescribe, resTopic, offsetsTopic) {
			resp.Topics = append(resp.Topics, b.offsetsTopicMetadata())
		}
	} else {
		// Before v4 there was no flag and Kafka auto-created when enabled.
		allowAuto := req.Version < 4 || req.AllowAutoTopicCreation
		for _, rt := range req.Topics {
			if rt.Topic == nil {
				continue
			}
			if !r.authorized(opDescribe, resTopic, *rt.Topic) {
				resp.Topics = append(resp.Topics, deniedTopic(*rt.Topic))
				continue
			}
			if isInternalTopic(*rt.Topic) {
				resp.Topics = append(resp.Topics, b.offsetsTopicMetadata())
				continue
			}
			t := b.topics.get(*rt.Topic)
			if t == nil && allowAuto && b.opts.AutoCreateTopics && !r.mayCreateTopic(*rt.Topic) {
				resp.Topics = append(resp.Topics, deniedTopic(*rt.Topic))
				continue
			}
			if t == nil && allowAuto && b.opts.AutoCreateTopics {
				var err error
				t, err = b.topics.create(*rt.Topic, -1, nil, false)
				if err != nil && b.topics.get(*rt.Topic) == nil {
					mt := kmsg.NewMetadataResponseTopic()
					mt.Topic = rt.Topic
					mt.ErrorCode, _ = codeOf(err)
					resp.Topics = append(resp.Topics, mt)
					continue
				}
				t = b.topics.get(*rt.Topic)
			}
			if t == nil {
				missing = append(missing, *rt.Topic)
				continue
			}
			topics = append(topics, t)
		}
	}
	for _, t := range topics {
		mt := b.topicMetadata(t)
		if req.IncludeTopicAuthorizedOperations {
			mt.AuthorizedOperations = r.authorizedOps(resTopic, t.meta.Name, topicOps)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	if req.IncludeClusterAuthorizedOperations && req.Version <= 10 {
		resp.AuthorizedOperations = r.authorizedOps(resCluster, acl.ClusterName, clusterOps)
	}
	for _, name := range missing {
		mt := kmsg.NewMetadataResponseTopic()
		mt.Topic = kmsg.StringPtr(name)
		mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
		if validTopicName(name) != nil {
			mt.ErrorCode = kerr.InvalidTopicException.Code
		}
		resp.Topics = append(resp.Topics, mt)
	}
	return respond(resp)
}

func (b *Broker) topicMetadata(t *topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = kmsg.StringPtr(t.meta.Name)
	mt.TopicID = t.id()
	for i, part := range t.parts {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition = int32(i)
		p.Leader = b.opts.NodeID
		p.LeaderEpoch = 0
		p.Replicas = []int32{b.opts.NodeID}
		p.ISR = []int32{b.opts.NodeID}
		if part.Offline() != nil {
			// As Kafka reports a partition whose only replica's log
			// directory failed: no leader, the replica listed offline.
			// Clients then neither produce to it nor fetch from it.
			p.ErrorCode = kerr.LeaderNotAvailable.Code
			p.Leader = -1
			p.ISR = []int32{}
			p.OfflineReplicas = []int32{b.opts.NodeID}
		}
		mt.Partitions = append(mt.Partitions, p)
	}
	return mt
}

// deniedTopic is a metadata answer for a topic the client may not describe
// (or not auto-create), as Kafka gives it: the error, nothing else.
func deniedTopic(name string) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = kmsg.StringPtr(name)
	mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
	return mt
}
