package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestSessionizePluginExactlyOnce runs the example stateful plugin
// (examples/plugins/sessionize) in a real pipeline: clicks of 30 users on
// the built-in broker, sessionized with a gap of one minute, into files. The
// pipeline is killed with SIGKILL once some sessions are out, and run
// again: every session comes out once, with the events the reference
// (computed here from the clicks) counts, none twice and none lost; the
// plugin's open sessions survived the kill in the pipeline's state.
func TestSessionizePluginExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "sessionize")
	if out, err := exec.Command("go", "build", "-o", plugin, "../../examples/plugins/sessionize").CombinedOutput(); err != nil {
		t.Fatalf("build the example plugin: %v\n%s", err, out)
	}
	const (
		partitions = 3
		gap        = time.Minute
		clicks     = 4000
	)
	addr, out := freeAddr(t), filepath.Join(dir, "out")
	spec := filepath.Join(dir, "p.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf(`version: 1
name: sessions
source:
  kafka: {brokers: [builtin], topics: [clicks]}
batch: {interval: 50ms, max-records-per-partition: 100}
delivery: exactly-once
transforms:
  - plugin: ./sessionize
    state: true
    settings: {gap: %s, time-field: ts}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, gap, out)), 0o644)
	run := func() *exec.Cmd {
		cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--broker-listen", addr, "--idle-exit", "3s")
		cmd.Stderr = &bytes.Buffer{} // read after Wait
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitForBroker(t, addr)
		return cmd
	}
	produce := func(recs []*kgo.Record) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("clicks"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		createTopic(t, cl, "clicks", partitions)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// Clicks in time order, each user's on the partition of its number;
	// pauses up to 10s, so a user's next click comes within the gap or
	// not, both often.
	rng := rand.New(rand.NewPCG(5, 6))
	ms := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixMilli()
	byUser := map[string][]int64{}
	var recs []*kgo.Record
	for range clicks {
		ms += rng.Int64N(10_000)
		u := rng.IntN(30)
		user := fmt.Sprintf("user%02d", u)
		byUser[user] = append(byUser[user], ms)
		recs = append(recs, &kgo.Record{Key: []byte(user), Partition: int32(u % partitions), Value: fmt.Appendf(nil, `{"user":%q,"ts":%d}`, user, ms)})
	}
	// Then, on each partition, a click an hour later: every session
	// before it closes.
	for p := range int32(partitions) {
		recs = append(recs, &kgo.Record{Key: []byte("late"), Partition: p, Value: fmt.Appendf(nil, `{"user":"closer%d","ts":%d}`, p, ms+time.Hour.Milliseconds())})
	}

	first := run()
	produce(recs[:clicks/2])
	waitForOutput(t, out, 20)
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()

	second := run()
	produce(recs[clicks/2:])
	if err := second.Wait(); err != nil {
		t.Fatalf("second run: %v\n%s", err, second.Stderr)
	}

	var want []string
	for user, ts := range byUser {
		start := 0
		for i := 1; i <= len(ts); i++ {
			if i == len(ts) || ts[i]-ts[i-1] > gap.Milliseconds() {
				want = append(want, fmt.Sprintf(`{"user":%q,"start":%q,"end":%q,"events":%d}`, user,
					time.UnixMilli(ts[start]).UTC().Format(time.RFC3339Nano), time.UnixMilli(ts[i-1]).UTC().Format(time.RFC3339Nano), i-start))
				start = i
			}
		}
	}
	got := filetest.Lines(t, out)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		for _, l := range got {
			if _, ok := slices.BinarySearch(want, l); !ok {
				t.Errorf("unexpected session %s", l)
			}
		}
		for _, l := range want {
			if _, ok := slices.BinarySearch(got, l); !ok {
				t.Errorf("missing session %s", l)
			}
		}
		t.Fatalf("%d sessions out, want %d; second run's log:\n%s", len(got), len(want), lastLines(fmt.Sprint(second.Stderr), 40))
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
