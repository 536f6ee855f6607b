package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/plugins/sdk"
)

const gap = time.Minute

// closedSessions is the reference: each user's events (times in
// increasing order) split where the pause is longer than gap, one line
// per session as the plugin writes it.
func closedSessions(events map[string][]int64) []string {
	var lines []string
	for user, ts := range events {
		start := 0
		for i := 1; i <= len(ts); i++ {
			if i == len(ts) || ts[i]-ts[i-1] > gap.Milliseconds() {
				lines = append(lines, fmt.Sprintf(`{"user":%q,"start":%q,"end":%q,"events":%d}`, user, msTime(ts[start]), msTime(ts[i-1]), i-start))
				start = i
			}
		}
	}
	slices.Sort(lines)
	return lines
}

func click(user string, ms int64, partition int32) sdk.Record {
	return sdk.Record{Topic: "clicks", Partition: partition, Value: fmt.Appendf(nil, `{"user":%q,"ts":%d}`, user, ms)}
}

// TestSessionsMatchReference sends random events of 12 users on 3
// partitions, in batches of random size, then an event far later on each
// partition to close every session: the sessions emitted are exactly the
// reference's.
func TestSessionsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tr, err := sdk.Local(context.Background(), newTransform(), "sessionize", map[string]any{"gap": gap.String(), "time-field": "ts"})
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	events := map[string][]int64{}
	var in []sdk.Record
	for range 3000 {
		ms += rng.Int64N(20_000) // pauses up to 20s: most users' next event comes within the gap, some not
		user := fmt.Sprintf("u%02d", rng.IntN(12))
		events[user] = append(events[user], ms)
		in = append(in, click(user, ms, int32(user[len(user)-1]%3)))
	}
	for p := range int32(3) {
		in = append(in, click(fmt.Sprintf("~flush%d", p), ms+time.Hour.Milliseconds(), p))
	}
	var got []string
	for len(in) > 0 {
		n := min(len(in), 1+rng.IntN(200))
		out, rejected, err := tr.Process(context.Background(), in[:n])
		if err != nil || len(rejected) > 0 {
			t.Fatalf("Process: %v, rejected %v", err, rejected)
		}
		for _, r := range out {
			if string(r.Key) == "" || !strings.Contains(string(r.Value), string(r.Key)) {
				t.Fatalf("session record keyed %q: %s", r.Key, r.Value)
			}
			got = append(got, string(r.Value))
		}
		in = in[n:]
	}
	slices.Sort(got)
	want := closedSessions(events)
	if !slices.Equal(got, want) {
		t.Fatalf("got %d sessions, want %d:\ngot  %q\nwant %q", len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
	}
}

func TestBadInputIsRejected(t *testing.T) {
	tr, err := sdk.Local(context.Background(), newTransform(), "sessionize", map[string]any{"time-field": "ts"})
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Now().UnixMilli()
	_, rejected, err := tr.Process(context.Background(), []sdk.Record{
		{Value: []byte("not json")},
		{Value: []byte(`{"ts":1}`)},
		{Value: []byte(`{"user":"a","ts":"yesterday"}`)},
		click("b", ms, 0),
		click("b", ms-2*defaultGap.Milliseconds(), 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, r := range rejected {
		reasons = append(reasons, r.Reason)
	}
	want := []string{"not a JSON object", "no user string field", "no ts field holding Unix milliseconds or an RFC 3339 time", "late event: more than 30m0s before its user's open session"}
	if !slices.Equal(reasons, want) {
		t.Fatalf("reasons %q, want %q", reasons, want)
	}
	if _, err := sdk.Local(context.Background(), newTransform(), "sessionize", map[string]any{"gap": "soon"}); err == nil || !strings.Contains(err.Error(), `gap: "soon" is not a positive duration`) {
		t.Fatalf("bad gap: %v", err)
	}
}
