package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The broker keeps committed offsets in its own store (broker/group), not
// in a topic, but Kafka clients and tools expect the internal
// __consumer_offsets topic in metadata: listed when all topics are asked
// for, marked internal, so that clients filtering internal topics (kgo's
// regex consumers, kadm.ListTopics, kafka-topics without
// --exclude-internal... ) see what they would see on Kafka. It cannot be
// created, deleted or produced to, as on Kafka. It holds no records: it
// reads as an empty log (ListOffsets 0, fetches at offset 0 empty).

// offsetsTopic is Kafka's internal topic of committed offsets.
const offsetsTopic = "__consumer_offsets"

// offsetsTopicPartitions is its partition count in metadata: one, as one
// log on this one coordinator holds every group's offsets (Kafka's default
// of 50 spreads groups over brokers, which a single node has no use for).
const offsetsTopicPartitions = 1

func isInternalTopic(name string) bool { return name == offsetsTopic }

// offsetsTopicMetadata is the metadata entry of __consumer_offsets.
func (b *Broker) offsetsTopicMetadata() kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = kmsg.StringPtr(offsetsTopic)
	mt.TopicID = derivedTopicID(offsetsTopic)
	mt.IsInternal = true
	for i := range int32(offsetsTopicPartitions) {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition, p.Leader, p.LeaderEpoch = i, b.opts.NodeID, 0
		p.Replicas, p.ISR = []int32{b.opts.NodeID}, []int32{b.opts.NodeID}
		mt.Partitions = append(mt.Partitions, p)
	}
	return mt
}

// internalTopicError is the answer to writing or deleting the internal
// topic, with Kafka's code: produce is INVALID_TOPIC_EXCEPTION ("Cannot
// append to internal topic"), delete TOPIC_AUTHORIZATION_FAILED, create
// TOPIC_ALREADY_EXISTS.
func internalTopicError(op string) error {
	switch op {
	case "produce":
		return errorf(kerr.InvalidTopicException, "Cannot append to internal topic %s", offsetsTopic)
	case "create":
		return errorf(kerr.TopicAlreadyExists, "topic %s already exists: it is the broker's internal topic of committed offsets", offsetsTopic)
	}
	return errorf(kerr.TopicAuthorizationFailed, "%s is the broker's internal topic of committed offsets and cannot be deleted", offsetsTopic)
}
