package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/quota"
	"github.com/sluicehq/sluice/broker/storage"
)

// handleFetch runs entirely on the writer: it may long-poll, and its
// response must follow the ones before it anyway.
func handleFetch(r *request) reply {
	req := r.msg.(*kmsg.FetchRequest)
	// Decided here, on the reader, once for all the long-poll's rounds.
	var denied []bool
	if r.c.b.authz != nil {
		denied = make([]bool, len(req.Topics))
		d := r.topicDecisions()
		for i, rt := range req.Topics {
			denied[i] = !d.allowed(r, opRead, rt.Topic, false)
		}
	}
	// The client's consumer_byte_rate, resolved once as well.
	var fq *fetchQuota
	if key, bound, ok := r.c.b.quotas.Resolve(quota.ConsumerByteRate, r.c.quotaUser(), r.clientID); ok {
		fq = &fetchQuota{key: key, bound: bound, maxBytes: quota.MaxBytesInWindow(bound)}
	}
	return func() *outgoing { return r.fetchThrottled(req, denied, fq) }
}

// fetchQuota is the consumer_byte_rate a fetch is measured against.
type fetchQuota struct {
	key   quota.SensorKey
	bound float64
	// maxBytes bounds the response to what the quota allows over the
	// window, as Kafka bounds it, so one fetch cannot take many windows'
	// worth (KIP-74's first batch still goes out whole).
	maxBytes int64
}

// fetchThrottled answers req and measures the response against the
// client's quota. Over it, the client gets an empty response with the
// throttle time and what was read does not count, as Kafka answers.
func (r *request) fetchThrottled(req *kmsg.FetchRequest, denied []bool, fq *fetchQuota) *outgoing {
	c := r.c
	out := c.fetch(req, denied, fq)
	if fq == nil {
		return out
	}
	size := responseSize(out)
	now := time.Now()
	d := c.b.sensors.Record(fq.key, fq.bound, float64(size), now)
	if d <= 0 {
		return out
	}
	c.b.sensors.Unrecord(fq.key, float64(size), now)
	out.release()
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	return r.throttle(d, resp, respond(resp), quotaFetch)()
}

// responseSize is the bytes out would send, as the quota counts them.
func responseSize(out *outgoing) int64 {
	n := int64(len(out.resp.AppendTo(nil)))
	for _, s := range out.sections {
		n += s.Len - int64(len(placeholder))
	}
	return n
}

// fetch answers req; denied, when not nil, marks the topics (by index) the
// client may not read; fq, when not nil, bounds the response's size.
func (c *conn) fetch(req *kmsg.FetchRequest, denied []bool, fq *fetchQuota) *outgoing {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	// Fetch sessions (KIP-227) are declined: session id 0 tells the client
	// to keep sending full fetches. Epoch 0 (open a session) and -1 (no
	// session; kafka-go sends it with session id -1) are full fetches, as
	// in Kafka; only an incremental fetch (epoch > 0) names a session we
	// never gave out.
	if req.SessionEpoch > 0 {
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return &outgoing{resp: resp}
	}
	wait := deadline(req.MaxWaitMillis)
	until := time.Now().Add(wait)
	var timer *time.Timer
	var wake chan struct{}
	minBytes := int64(req.MinBytes)
	if fq != nil {
		minBytes = min(minBytes, fq.maxBytes)
	}
	for {
		out, bytes, ends := c.fetchOnce(req, denied, fq)
		if bytes >= minBytes || ends == nil || c.ctx.Err() != nil || !time.Now().Before(until) {
			return out
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
			wake = make(chan struct{}, 1)
		}
		out.release()
		// Register before sleeping; Wait refuses if the log grew past what
		// fetchOnce saw, and then we look again at once.
		var registered []*storage.Partition
		grew := false
		for _, e := range ends {
			wait := e.p.Wait
			if e.stable {
				wait = e.p.WaitStable
			}
			if !wait(e.end, wake) {
				grew = true
				break
			}
			registered = append(registered, e.p)
		}
		if !grew {
			select {
			case <-wake:
			case <-timer.C:
			case <-c.ctx.Done():
			}
		}
		for _, p := range registered {
			p.Unwait(wake)
		}
		select {
		case <-wake:
		default:
		}
	}
}

// logEnd is a partition's end offset (stable: its last stable offset) as a
// fetch saw it.
type logEnd struct {
	p      *storage.Partition
	end    int64
	stable bool
}

// fetchOnce builds a response from what the logs hold now. It reports the
// bytes found and the end offsets it saw, or nil ends when waiting cannot
// help (a partition errored).
func (c *conn) fetchOnce(req *kmsg.FetchRequest, denied []bool, fq *fetchQuota) (*outgoing, int64, []logEnd) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	out := &outgoing{resp: resp}
	remaining := int64(req.MaxBytes)
	if req.Version < 3 || remaining <= 0 {
		remaining = MaxFrameBytes
	}
	remaining = min(remaining, MaxFrameBytes-1<<20)
	if fq != nil {
		remaining = min(remaining, fq.maxBytes)
	}
	var total int64
	var ends []logEnd
	waitable := true
	committed := req.IsolationLevel == 1
	for ti, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		t := c.b.topics.get(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			// Empty, not null: librdkafka rejects a null record set.
			sp.RecordBatches = []byte{}
			if denied != nil && denied[ti] {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				sp.HighWatermark = -1
				waitable = false
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if t == nil && isInternalTopic(rt.Topic) && rp.Partition >= 0 && rp.Partition < offsetsTopicPartitions {
				// __consumer_offsets is listed but holds no records here
				// (internal_topic.go): an empty log, offset 0 only.
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = 0, 0, 0
				if rp.FetchOffset != 0 {
					sp.ErrorCode = kerr.OffsetOutOfRange.Code
					waitable = false
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				sp.HighWatermark = -1
				waitable = false
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := t.parts[rp.Partition]
			if err := p.Offline(); err != nil {
				sp.ErrorCode, _ = codeOf(err)
				sp.HighWatermark = -1
				waitable = false
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			start, end := p.Offsets()
			lso := p.LastStableOffset()
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = end, lso, start
			// read_committed reads stop at the last stable offset and
			// long-poll for it to move.
			upto := int64(-1)
			if committed {
				upto = lso
				ends = append(ends, logEnd{p, lso, true})
			} else {
				ends = append(ends, logEnd{p, end, false})
			}
			// The first partition with data gets at least one batch even
			// past the limits (KIP-74), so a large batch cannot stall a
			// consumer.
			limit := min(int64(rp.PartitionMaxBytes), remaining)
			if total == 0 {
				limit = max(limit, 1)
			}
			if limit > 0 || total == 0 {
				sec, err := p.ReadUpTo(rp.FetchOffset, limit, upto)
				if err != nil {
					sp.ErrorCode, _ = codeOf(err)
					waitable = false
				} else if sec.Len > 0 {
					sp.RecordBatches = placeholder
					out.sections = append(out.sections, sec)
					total += sec.Len
					remaining -= sec.Len
					if committed {
						// Those overlapping the batches returned, as
						// Kafka bounds them: a consumer far behind is not
						// sent every abort up to the LSO.
						for _, a := range p.AbortedTxns(rp.FetchOffset, sec.Next) {
							at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
							at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
							sp.AbortedTransactions = append(sp.AbortedTransactions, at)
						}
					}
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if !waitable {
		ends = nil
	}
	return out, total, ends
}
