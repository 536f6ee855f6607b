package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Special ListOffsets timestamps.
const (
	latestTimestamp   = -1
	earliestTimestamp = -2
)

func handleListOffsets(r *request) reply {
	req := r.msg.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	b := r.c.b
	d := r.topicDecisions()
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		allowed := d.allowed(r, opDescribe, rt.Topic, false)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset = -1, -1
			p := b.topics.partition(rt.Topic, rp.Partition)
			switch {
			case !allowed:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case p == nil && isInternalTopic(rt.Topic) && rp.Partition >= 0 && rp.Partition < offsetsTopicPartitions:
				sp.Offset = 0 // __consumer_offsets is an empty log here (internal_topic.go)
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case p.Offline() != nil:
				sp.ErrorCode, _ = codeOf(p.Offline())
			case rp.Timestamp == latestTimestamp && req.IsolationLevel == 1:
				sp.Offset = p.LastStableOffset()
			case rp.Timestamp == latestTimestamp:
				sp.Offset = p.EndOffset()
			case rp.Timestamp == earliestTimestamp:
				sp.Offset = p.StartOffset()
			case rp.Timestamp < 0:
				sp.ErrorCode = kerr.InvalidRequest.Code
			default:
				off, ts, err := p.OffsetForTime(rp.Timestamp)
				if err != nil {
					sp.ErrorCode, _ = codeOf(err)
					break
				}
				sp.Offset, sp.Timestamp = off, ts
			}
			sp.LeaderEpoch = 0
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}
