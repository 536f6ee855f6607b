package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/storage"
)

// handleFetch runs entirely on the writer: it may long-poll, and its
// response must follow the ones before it anyway.
func handleFetch(r *request) reply {
	req := r.msg.(*kmsg.FetchRequest)
	return func() *outgoing { return r.c.fetch(req) }
}

func (c *conn) fetch(req *kmsg.FetchRequest) *outgoing {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	// Fetch sessions (KIP-227) are declined: session id 0 tells the client
	// to keep sending full fetches. A client naming a session we never
	// gave out is told it does not exist.
	if req.SessionID != 0 {
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return &outgoing{resp: resp}
	}
	wait := deadline(req.MaxWaitMillis)
	var timer *time.Timer
	var wake chan struct{}
	for {
		out, bytes, waitable := c.fetchOnce(req)
		if bytes >= int64(req.MinBytes) || wait <= 0 || !waitable || c.ctx.Err() != nil {
			return out
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
			wake = make(chan struct{}, 1)
		}
		out.release()
		// Register before sleeping; Wait refuses if data arrived since.
		var registered []*storage.Partition
		ready := false
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				p := c.b.topics.partition(rt.Topic, rp.Partition)
				if p == nil {
					continue
				}
				if !p.Wait(rp.FetchOffset, wake) {
					ready = true
					break
				}
				registered = append(registered, p)
			}
			if ready {
				break
			}
		}
		timedOut := false
		if !ready {
			select {
			case <-wake:
			case <-timer.C:
				timedOut = true
			case <-c.ctx.Done():
				timedOut = true
			}
		}
		for _, p := range registered {
			p.Unwait(wake)
		}
		select {
		case <-wake:
		default:
		}
		if timedOut {
			out, _, _ := c.fetchOnce(req)
			return out
		}
	}
}

// fetchOnce builds a response from what the logs hold now. It reports the
// bytes found and whether waiting could help (no partition errored).
func (c *conn) fetchOnce(req *kmsg.FetchRequest) (*outgoing, int64, bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	out := &outgoing{resp: resp}
	remaining := int64(req.MaxBytes)
	if req.Version < 3 || remaining <= 0 {
		remaining = MaxFrameBytes
	}
	remaining = min(remaining, MaxFrameBytes-1<<20)
	var total int64
	waitable := true
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		t := c.b.topics.get(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			if t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				waitable = false
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := t.parts[rp.Partition]
			start, end := p.Offsets()
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = end, end, start
			// The first partition with data gets at least one batch even
			// past the limits (KIP-74), so a large batch cannot stall a
			// consumer.
			limit := min(int64(rp.PartitionMaxBytes), remaining)
			if total == 0 {
				limit = max(limit, 1)
			}
			if limit > 0 || total == 0 {
				sec, err := p.Read(rp.FetchOffset, limit)
				if err != nil {
					sp.ErrorCode, _ = codeOf(err)
					waitable = false
				} else if sec.Len > 0 {
					sp.RecordBatches = placeholder
					out.sections = append(out.sections, sec)
					total += sec.Len
					remaining -= sec.Len
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return out, total, waitable
}
