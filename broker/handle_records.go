package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/group"
)

// DeleteRecords (kafka-delete-records.sh, kadm.DeleteRecords): advance
// partitions' log start offsets. One node holds every replica, so the new
// start is in force when the call returns and the request's timeout has
// nothing to wait for.

// invalidLowWatermark is Kafka's low watermark in a failed partition's
// answer.
const invalidLowWatermark = -1

func handleDeleteRecords(r *request) reply {
	req := r.msg.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	b := r.c.b
	d := r.topicDecisions()
	now := time.Now()
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		allowed := d.allowed(r, opDelete, rt.Topic, false)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = invalidLowWatermark
			p := b.topics.partition(rt.Topic, rp.Partition)
			switch {
			case !allowed:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case !b.topics.deletable(rt.Topic):
				// As Kafka: only a log whose cleanup.policy has delete
				// gives up records by offset.
				sp.ErrorCode = kerr.PolicyViolation.Code
				b.log.Info("DeleteRecords refused: the topic's cleanup.policy is compact without delete", "topic", rt.Topic, "partition", rp.Partition)
			default:
				low, err := p.DeleteRecordsBefore(rp.Offset, now)
				if err != nil {
					sp.ErrorCode, _ = codeOf(err)
					r.c.log.Debug("delete records refused", "topic", rt.Topic, "partition", rp.Partition, "offset", rp.Offset, "err", err)
					break
				}
				sp.LowWatermark = low
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}

// OffsetDelete (kafka-consumer-groups.sh --delete-offsets,
// kadm.DeleteOffsets): forget a group's committed offsets of some
// partitions. Needs DELETE on the group, then READ on each topic.
func handleOffsetDelete(r *request) reply {
	req := r.msg.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if !r.authorized(opDelete, resGroup, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return respond(resp)
	}
	// Partitions refused before the coordinator sees them, by code; the
	// rest go to it in one call.
	refused := map[group.TopicPartition]int16{}
	var parts []group.TopicPartition
	d := r.topicDecisions()
	for _, rt := range req.Topics {
		allowed := d.allowed(r, opRead, rt.Topic, false)
		t := r.c.b.topics.get(rt.Topic)
		for _, rp := range rt.Partitions {
			tp := group.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}
			switch {
			case !allowed:
				refused[tp] = kerr.TopicAuthorizationFailed.Code
			case t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts):
				refused[tp] = kerr.UnknownTopicOrPartition.Code
			default:
				parts = append(parts, tp)
			}
		}
	}
	gerr, perrs := r.c.b.groups.DeleteOffsets(req.Group, parts)
	if gerr != nil {
		resp.ErrorCode = gerr.Code
		return respond(resp)
	}
	codes := make(map[group.TopicPartition]int16, len(parts))
	for i, tp := range parts {
		codes[tp] = code(perrs[i])
	}
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			tp := group.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}
			if c, ok := refused[tp]; ok {
				sp.ErrorCode = c
			} else {
				sp.ErrorCode = codes[tp]
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if len(parts) > 0 {
		r.c.log.Info("deleted group offsets", "group", req.Group, "partitions", len(parts))
	}
	return respond(resp)
}
