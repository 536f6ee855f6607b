// Command sessionize is an example stateful transform plugin: it groups
// JSON events per user into sessions and emits one record per session when
// the session closes, counted exactly once across crashes and restarts. Its
// state (the open sessions) lives in the pipeline's keyed state
// (sdk.State), which sluice commits with the output, so the plugin itself
// keeps nothing in memory between batches.
//
//	go build -o examples/plugins/bin/sessionize ./examples/plugins/sessionize
//	sluice run examples/plugins/sessionize.yaml
//
// An event is a JSON object with a user field and an event time (a field
// holding Unix milliseconds or an RFC 3339 time, or the record's
// timestamp). A session is a user's run of events with no pause longer
// than gap. It closes when an event of the user comes more than gap after
// its last, or when the task's watermark (the latest event time seen in
// the partition) passes its end by more than gap. Its record is keyed by
// the user:
//
//	{"user":"ann","start":"2026-01-02T10:00:00Z","end":"2026-01-02T10:04:10Z","events":7}
//
// Events of one user must all be on one partition (key the topic by user):
// state is per task, a task being a partition. An event more than gap
// before its user's open session is rejected as late (it goes to the
// dead letters); one whose session already closed opens a new session.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/plugins/sdk"
)

type settings struct {
	// Gap is the longest pause within a session (a Go duration).
	Gap string `json:"gap"`
	// UserField names the JSON field holding the user (default "user").
	UserField string `json:"user-field"`
	// TimeField names the JSON field holding the event time, Unix
	// milliseconds or RFC 3339; empty: the record's timestamp.
	TimeField string `json:"time-field"`
}

// defaultGap is the gap without a gap setting: thirty minutes is what web
// analytics usually take as the end of a visit.
const defaultGap = 30 * time.Minute

// State keys, per task. An open session is kept under its user, and
// indexed by its end time so that the sessions the watermark closes are
// the first keys of a scan, in order.
const (
	sessionPrefix = "s/" // s/USER → session
	endPrefix     = "e/" // e/END(8 bytes, big-endian ms)/USER → nothing
	watermarkKey  = "w"  // latest event time seen in the task (ms)
)

// session is an open session, stored as JSON in the state.
type session struct {
	Start  int64 `json:"start"` // Unix ms
	End    int64 `json:"end"`
	Events int64 `json:"events"`
}

type sessionizer struct {
	gap          int64 // ms
	userF, timeF string
}

func newTransform() sdk.Transform {
	return sdk.WithSettings(func(s settings) (sdk.Transform, error) {
		gap := defaultGap
		if s.Gap != "" {
			var err error
			if gap, err = time.ParseDuration(s.Gap); err != nil || gap <= 0 {
				return nil, fmt.Errorf("gap: %q is not a positive duration; write gap: 30m", s.Gap)
			}
		}
		if s.UserField == "" {
			s.UserField = "user"
		}
		z := &sessionizer{gap: gap.Milliseconds(), userF: s.UserField, timeF: s.TimeField}
		return sdk.Batch(z.process), nil
	})
}

// event is one parsed input record.
type event struct {
	rec  sdk.Record
	user string
	ms   int64
}

func (z *sessionizer) process(ctx context.Context, in []sdk.Record) ([]sdk.Record, []sdk.Rejected, error) {
	st := sdk.State(ctx)
	var (
		out      []sdk.Record
		rejected []sdk.Rejected
		byTask   = map[int32][]event{}
		tasks    []int32
	)
	for _, r := range in {
		e, err := z.parse(r)
		if err != nil {
			rejected = append(rejected, sdk.Rejected{Record: r, Reason: err.Error()})
			continue
		}
		if _, ok := byTask[r.Partition]; !ok {
			tasks = append(tasks, r.Partition)
		}
		byTask[r.Partition] = append(byTask[r.Partition], e)
	}
	for _, task := range tasks {
		var err error
		if out, rejected, err = z.task(st.Task(task), byTask[task], out, rejected); err != nil {
			return nil, nil, err
		}
	}
	return out, rejected, nil
}

func (z *sessionizer) parse(r sdk.Record) (event, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(r.Value, &fields); err != nil {
		return event{}, errors.New("not a JSON object")
	}
	var user string
	if err := json.Unmarshal(fields[z.userF], &user); err != nil || user == "" {
		return event{}, fmt.Errorf("no %s string field", z.userF)
	}
	if z.timeF == "" {
		if r.Time.IsZero() {
			return event{}, errors.New("the record has no timestamp; set time-field")
		}
		return event{rec: r, user: user, ms: r.Time.UnixMilli()}, nil
	}
	raw := fields[z.timeF]
	var ms int64
	if err := json.Unmarshal(raw, &ms); err == nil {
		return event{rec: r, user: user, ms: ms}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return event{rec: r, user: user, ms: t.UnixMilli()}, nil
		}
	}
	return event{}, fmt.Errorf("no %s field holding Unix milliseconds or an RFC 3339 time", z.timeF)
}

// task runs one task's events, in order, then closes what the watermark
// passed.
func (z *sessionizer) task(st sdk.TaskState, events []event, out []sdk.Record, rejected []sdk.Rejected) ([]sdk.Record, []sdk.Rejected, error) {
	// One round trip for every key the events will read.
	keys := []string{watermarkKey}
	for _, e := range events {
		keys = append(keys, sessionPrefix+e.user)
	}
	if err := st.Prefetch(keys...); err != nil {
		return nil, nil, err
	}
	wm, err := getInt(st, watermarkKey)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range events {
		s, open, err := getSession(st, e.user)
		if err != nil {
			return nil, nil, err
		}
		if open && e.ms < s.Start-z.gap {
			rejected = append(rejected, sdk.Rejected{Record: e.rec, Reason: fmt.Sprintf("late event: more than %s before its user's open session", time.Duration(z.gap)*time.Millisecond)})
			continue
		}
		wm = max(wm, e.ms)
		switch {
		case open && e.ms <= s.End+z.gap:
			if err := st.Delete(endKey(s.End, e.user)); err != nil {
				return nil, nil, err
			}
			s.Start, s.End, s.Events = min(s.Start, e.ms), max(s.End, e.ms), s.Events+1
		case open:
			// A pause longer than gap: the open session is over.
			if out, err = z.close(st, e.user, s, e.rec, out); err != nil {
				return nil, nil, err
			}
			fallthrough
		default:
			s = session{Start: e.ms, End: e.ms, Events: 1}
		}
		if err := putSession(st, e.user, s); err != nil {
			return nil, nil, err
		}
	}
	if err := st.Put(watermarkKey, strconv.AppendInt(nil, wm, 10)); err != nil {
		return nil, nil, err
	}
	// Close the sessions the watermark passed: the first keys of the end
	// index, oldest end first.
	var closing []string // users
	err = st.Scan(endPrefix, func(key string, _ []byte) bool {
		end, user, ok := parseEndKey(key)
		if !ok || end+z.gap >= wm {
			return false
		}
		closing = append(closing, user)
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	for _, user := range closing {
		s, open, err := getSession(st, user)
		if err != nil {
			return nil, nil, err
		}
		if !open {
			continue
		}
		if out, err = z.close(st, user, s, events[len(events)-1].rec, out); err != nil {
			return nil, nil, err
		}
	}
	return out, rejected, nil
}

// close emits session s of user and removes it from the state. like gives
// the output record its topic and partition.
func (z *sessionizer) close(st sdk.TaskState, user string, s session, like sdk.Record, out []sdk.Record) ([]sdk.Record, error) {
	if err := st.Delete(sessionPrefix + user); err != nil {
		return nil, err
	}
	if err := st.Delete(endKey(s.End, user)); err != nil {
		return nil, err
	}
	value, err := json.Marshal(struct {
		User   string `json:"user"`
		Start  string `json:"start"`
		End    string `json:"end"`
		Events int64  `json:"events"`
	}{user, msTime(s.Start), msTime(s.End), s.Events})
	if err != nil {
		return nil, err
	}
	return append(out, sdk.Record{
		Topic: like.Topic, Partition: like.Partition, Key: []byte(user), Value: value, Time: time.UnixMilli(s.End),
	}), nil
}

func msTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

func endKey(end int64, user string) string {
	return endPrefix + string(binary.BigEndian.AppendUint64(nil, uint64(end))) + "/" + user
}

func parseEndKey(key string) (end int64, user string, ok bool) {
	const head = len(endPrefix) + 8 + 1
	if len(key) < head {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64([]byte(key[len(endPrefix) : len(endPrefix)+8]))), key[head:], true
}

func getSession(st sdk.TaskState, user string) (session, bool, error) {
	v, ok, err := st.Get(sessionPrefix + user)
	if err != nil || !ok {
		return session{}, false, err
	}
	var s session
	if err := json.Unmarshal(v, &s); err != nil {
		return session{}, false, fmt.Errorf("state of user %q is not a session: %w", user, err)
	}
	return s, true, nil
}

func putSession(st sdk.TaskState, user string, s session) error {
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := st.Put(sessionPrefix+user, v); err != nil {
		return err
	}
	return st.Put(endKey(s.End, user), nil)
}

func getInt(st sdk.TaskState, key string) (int64, error) {
	v, ok, err := st.Get(key)
	if err != nil || !ok {
		return 0, err
	}
	return strconv.ParseInt(string(v), 10, 64)
}

func main() {
	sdk.Serve(newTransform())
}
