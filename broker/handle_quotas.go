package broker

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/quota"
)

// DescribeClientQuotas and AlterClientQuotas (KIP-546), as Kafka serves
// them: describing needs DESCRIBE_CONFIGS on the cluster, altering
// ALTER_CONFIGS; the quotas live in package quota (ARCHITECTURE §19).

// quotaErr turns a quota refusal into a Kafka code and message.
func (r *request) quotaErr(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	msg := err.Error()
	var qe *quota.Error
	if errors.As(err, &qe) {
		return qe.Code.Code, &msg
	}
	r.c.log.Error("changing client quotas failed", "err", err)
	return kerr.UnknownServerError.Code, &msg
}

func handleDescribeClientQuotas(r *request) reply {
	req := r.msg.(*kmsg.DescribeClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	if !r.authorizedCluster(opDescribeConfigs) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("describing client quotas needs DESCRIBE_CONFIGS on the cluster")
		return respond(resp)
	}
	components := make([]quota.Component, len(req.Components))
	for i, c := range req.Components {
		components[i] = quota.Component{EntityType: c.EntityType, MatchType: int8(c.MatchType), Match: c.Match}
	}
	entries, err := r.c.b.quotas.Describe(components, req.Strict)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = r.quotaErr(err)
		return respond(resp)
	}
	resp.Entries = []kmsg.DescribeClientQuotasResponseEntry{}
	for _, e := range entries {
		se := kmsg.NewDescribeClientQuotasResponseEntry()
		for _, p := range e.Entity.Parts() {
			ee := kmsg.NewDescribeClientQuotasResponseEntryEntity()
			ee.Type, ee.Name = p.Type, p.Name
			se.Entity = append(se.Entity, ee)
		}
		for _, k := range sortedKeys(e.Values) {
			v := kmsg.NewDescribeClientQuotasResponseEntryValue()
			v.Key, v.Value = k, e.Values[k]
			se.Values = append(se.Values, v)
		}
		resp.Entries = append(resp.Entries, se)
	}
	return respond(resp)
}

func handleAlterClientQuotas(r *request) reply {
	req := r.msg.(*kmsg.AlterClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.AlterClientQuotasResponse)
	answer := func(i int, code int16, msg *string) {
		se := kmsg.NewAlterClientQuotasResponseEntry()
		se.ErrorCode, se.ErrorMessage = code, msg
		for _, p := range req.Entries[i].Entity {
			ee := kmsg.NewAlterClientQuotasResponseEntryEntity()
			ee.Type, ee.Name = p.Type, p.Name
			se.Entity = append(se.Entity, ee)
		}
		resp.Entries = append(resp.Entries, se)
	}
	if !r.authorizedCluster(opAlterConfigs) {
		msg := kmsg.StringPtr("changing client quotas needs ALTER_CONFIGS on the cluster")
		for i := range req.Entries {
			answer(i, kerr.ClusterAuthorizationFailed.Code, msg)
		}
		return respond(resp)
	}
	alts := make([]quota.Alteration, len(req.Entries))
	for i, e := range req.Entries {
		for _, p := range e.Entity {
			alts[i].Entity = append(alts[i].Entity, quota.EntityPart{Type: p.Type, Name: p.Name})
		}
		for _, op := range e.Ops {
			alts[i].Ops = append(alts[i].Ops, quota.Op{Key: op.Key, Value: op.Value, Remove: op.Remove})
		}
	}
	results, err := r.c.b.quotas.Alter(alts, req.ValidateOnly)
	for i := range req.Entries {
		if err != nil {
			code, msg := r.quotaErr(err)
			answer(i, code, msg)
			continue
		}
		code, msg := r.quotaErr(results[i])
		answer(i, code, msg)
		if results[i] == nil && !req.ValidateOnly {
			r.c.log.Info("client quotas changed", "by", r.c.principal, "entity", entityString(req.Entries[i].Entity), "ops", len(req.Entries[i].Ops))
		}
	}
	return respond(resp)
}

func entityString(parts []kmsg.AlterClientQuotasRequestEntryEntity) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString(",")
		}
		name := "<default>"
		if p.Name != nil {
			name = *p.Name
		}
		b.WriteString(p.Type + "=" + name)
	}
	return b.String()
}

func sortedKeys(m map[string]float64) []string {
	return slices.Sorted(maps.Keys(m))
}

// quotaUser is the user a quota names for the connection's principal:
// its name without Kafka's "User:" type.
func (c *conn) quotaUser() string {
	return strings.TrimPrefix(c.principal, "User:")
}

// throttleFor records v bytes against the quota key of r's client and
// returns how long the client is throttled, zero if within its quota or if
// none applies.
func (r *request) throttleFor(key string, v float64) time.Duration {
	b := r.c.b
	sk, bound, ok := b.quotas.Resolve(key, r.c.quotaUser(), r.clientID)
	if !ok {
		return 0
	}
	return b.sensors.Record(sk, bound, v, time.Now())
}

// throttle applies a throttle to r's connection, as Kafka does after
// KIP-219: the response carries the time and goes out at once, and the
// connection is muted (not read) for that time. A client too old to
// throttle itself gets its response after the time instead, as before
// KIP-219. It returns the reply to use.
func (r *request) throttle(d time.Duration, resp kmsg.Response, rep reply, quotaType string) reply {
	if d <= 0 {
		return rep
	}
	ms := int32(min(d.Milliseconds(), int64(^uint32(0)>>1)))
	r.c.b.metrics.throttled(quotaType, d)
	r.c.mute(d)
	tr, ok := resp.(interface {
		kmsg.ThrottleResponse
		kmsg.SetThrottleResponse
	})
	if !ok {
		return rep
	}
	tr.SetThrottle(ms)
	if _, clientThrottles := tr.Throttle(); clientThrottles {
		return rep
	}
	return func() *outgoing {
		out := rep()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.c.ctx.Done():
		}
		return out
	}
}

// mute keeps the connection's next request unread for d.
func (c *conn) mute(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.mutedUntil.Load()
		if cur >= until || c.mutedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// awaitUnmuted waits out a throttle before the next request is read. It
// returns false if the connection closes meanwhile.
func (c *conn) awaitUnmuted() bool {
	for {
		d := time.Until(time.Unix(0, c.mutedUntil.Load()))
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return false
		}
	}
}

// requestQuota measures the time the request took on the connection's
// reader (decoding and the synchronous part of its handler, where an
// append or an admin change happens) against the client's
// request_percentage, as Kafka measures its request handler threads' time,
// and throttles the client over it: the response carries the larger of
// this throttle and any other, and the connection is muted.
func (r *request) requestQuota(rep reply, took time.Duration) reply {
	b := r.c.b
	key, bound, ok := b.quotas.Resolve(quota.RequestPercentage, r.c.quotaUser(), r.clientID)
	if !ok {
		return rep
	}
	d := b.sensors.RecordRequestTime(key, bound, took, time.Now())
	if d <= 0 {
		return rep
	}
	b.metrics.throttled(quotaRequest, d)
	r.c.mute(d)
	until := time.Now().Add(d)
	ms := int32(d.Milliseconds())
	return func() *outgoing {
		out := rep()
		if out == nil || out.raw {
			return out
		}
		tr, ok := out.resp.(interface {
			kmsg.ThrottleResponse
			kmsg.SetThrottleResponse
		})
		if !ok {
			return out
		}
		out.resp.SetVersion(r.version)
		cur, clientThrottles := tr.Throttle()
		if cur < ms {
			tr.SetThrottle(ms)
		}
		if !clientThrottles {
			// Delayed as before KIP-219; a byte-rate delay inside rep
			// already counts towards it.
			if wait := time.Until(until); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-r.c.ctx.Done():
					t.Stop()
				}
			}
		}
		return out
	}
}
