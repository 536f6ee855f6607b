package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
	"github.com/sluicehq/sluice/plugins/sdk"
	"github.com/sluicehq/sluice/state"
)

// linkTestBinary links the test binary under name, so that starting it
// runs the plugin TestMain serves under that name.
func linkTestBinary(t *testing.T, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(self, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func newStateTransform(t *testing.T, name string, cfg Config) *Transform {
	t.Helper()
	cfg.Plugin, cfg.State = linkTestBinary(t, name), true
	if cfg.Name == "" {
		cfg.Name = "stateful"
	}
	return newTransform(t, cfg)
}

// onPartition returns records of one partition.
func onPartition(p int32, values ...string) []engine.Record {
	recs := records(values...)
	for i := range recs {
		recs[i].Partition = p
	}
	return recs
}

// batch runs in through tr as one batch of m and returns the outputs.
func batch(t *testing.T, m *state.Memory, tr *Transform, in []engine.Record) (string, engine.StateBatch) {
	t.Helper()
	ctx, b := m.Begin(context.Background())
	out, _, err := tr.Process(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	return values(out), b
}

// commit prepares b at epoch e for every task and commits it.
func commit(t *testing.T, b engine.StateBatch, e uint64) {
	t.Helper()
	if err := b.Prepare(context.Background(), func(engine.Task) uint64 { return e }); err != nil {
		t.Fatal(err)
	}
	b.Committed()
}

func TestStateGetPutDeleteScan(t *testing.T) {
	for _, noShm := range []bool{false, true} {
		t.Run(transportName(noShm), func(t *testing.T) {
			m := state.NewMemory()
			tr := newStateTransform(t, testStatePluginName, Config{NoSharedMemory: noShm})
			got, b1 := batch(t, m, tr, onPartition(0, "put a 1", "put b 2", "put c 3", "put d 4", "get a", "del b", "get b", "scan", "get zz"))
			if want := "ok,ok,ok,ok,1,ok,<none>,a=1 c=3 d=4,<none>"; got != want {
				t.Fatalf("batch 1: %q, want %q", got, want)
			}
			// Batch 2 runs ahead of batch 1's commit and reads its changes;
			// its scan merges its own writes with them.
			got, b2 := batch(t, m, tr, onPartition(0, "get a", "del c", "put bb 5", "scan", "scan b", "prefetch a d nope", "get d", "get nope"))
			if want := "1,ok,ok,a=1 bb=5 d=4,bb=5,ok,4,<none>"; got != want {
				t.Fatalf("batch 2: %q, want %q", got, want)
			}
			commit(t, b1, 1)
			commit(t, b2, 2)
			snap := m.Snapshot(0)["stateful"]
			if fmt.Sprint(snap) != "map[a:1 bb:5 d:4]" {
				t.Fatalf("committed state %v, want a=1 bb=5 d=4", snap)
			}
		})
	}
}

func TestStateReadsYourWritesInBatch(t *testing.T) {
	m := state.NewMemory()
	tr := newStateTransform(t, testStatePluginName, Config{})
	got, b := batch(t, m, tr, onPartition(3, "incr n", "incr n", "del n", "incr n", "incr n", "incr n", "scan n"))
	if want := "1,2,ok,1,2,3,n=3"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	commit(t, b, 1)
	if got, _ := batch(t, m, tr, onPartition(3, "incr n")); got != "4" {
		t.Fatalf("next batch: %q, want 4", got)
	}
}

// A batch that fails or that the engine discards leaves no state behind;
// one prepared whose commit was lost counts once Restore hears the sink
// committed it (the epoch rule, through state.Memory).
func TestStateFollowsTheEpochRule(t *testing.T) {
	ctx := context.Background()
	m := state.NewMemory()
	tr := newStateTransform(t, testStatePluginName, Config{})
	_, b1 := batch(t, m, tr, onPartition(0, "incr n"))
	commit(t, b1, 1)

	// The plugin fails the batch after writing: nothing is applied.
	c, _ := m.Begin(ctx)
	if _, _, err := tr.Process(c, onPartition(0, "incr n", "fail")); err == nil || !strings.Contains(err.Error(), "failed on purpose") {
		t.Fatalf("err = %v, want the plugin's failure", err)
	}
	m.Discard()
	if got, _ := batch(t, m, tr, onPartition(0, "get n")); got != "1" {
		t.Fatalf("after a failed batch: n = %q, want 1", got)
	}
	m.Discard()

	// The plugin process dies mid-batch: its writes never reach the host,
	// the batch is retried on a new process.
	c, _ = m.Begin(ctx)
	if _, _, err := tr.Process(c, onPartition(0, "incr n", "crash")); !engine.IsRetryable(err) {
		t.Fatalf("err = %v, want a retryable failure of the crashed plugin", err)
	}
	m.Discard()
	if got, b := batch(t, m, tr, onPartition(0, "get n")); got != "1" {
		t.Fatalf("after a crash: n = %q, want 1", got)
	} else {
		commit(t, b, 2)
	}

	// The batch succeeds, then the sink fails: the engine discards it.
	batch(t, m, tr, onPartition(0, "incr n"))
	m.Discard()
	if got, _ := batch(t, m, tr, onPartition(0, "get n")); got != "1" {
		t.Fatalf("after a discarded batch: n = %q, want 1", got)
	}
	m.Discard()

	// Prepared at epoch 3, its commit's outcome lost: Restore decides.
	for _, sinkEpoch := range []uint64{2, 3} {
		_, b := batch(t, m, tr, onPartition(0, "incr n"))
		if err := b.Prepare(ctx, func(engine.Task) uint64 { return 3 }); err != nil {
			t.Fatal(err)
		}
		m.Discard()
		if err := m.Restore(ctx, nil, func(engine.Task) uint64 { return sinkEpoch }); err != nil {
			t.Fatal(err)
		}
		want := map[uint64]string{2: "1", 3: "2"}[sinkEpoch]
		if got := m.Snapshot(0)["stateful"]["n"]; got != want {
			t.Fatalf("sink committed epoch %d: n = %q, want %q", sinkEpoch, got, want)
		}
	}
}

// Tasks keep their own keys; with two workers their reads and writes
// reach the View from two plugin processes at once.
func TestStateIsPerTaskAndNamespace(t *testing.T) {
	m := state.NewMemory()
	a := newStateTransform(t, testStatePluginName, Config{Name: "a", Workers: 2})
	b := newStateTransform(t, testStatePluginName, Config{Name: "b"})
	in := append(onPartition(0, "put k zero", "get k"), onPartition(1, "put k one", "get k")...)
	ctx, sb := m.Begin(context.Background())
	out, _, err := a.Process(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]string{}
	for _, r := range out {
		got[r.Partition] += string(r.Value) + ","
	}
	if got[0] != "ok,zero," || got[1] != "ok,one," {
		t.Fatalf("outputs per task %q, want each task to read its own k", got)
	}
	// Another step (namespace) over the same batch sees none of it.
	out, _, err = b.Process(ctx, onPartition(0, "get k", "scan"))
	if err != nil {
		t.Fatal(err)
	}
	if values(out) != "<none>," {
		t.Fatalf("step b read %q, want nothing of step a's keys", values(out))
	}
	commit(t, sb, 1)
	if s0, s1 := m.Snapshot(0), m.Snapshot(1); s0["a"]["k"] != "zero" || s1["a"]["k"] != "one" || len(s0["b"]) != 0 {
		t.Fatalf("committed %v and %v", s0, s1)
	}
}

// Reads larger than one answer come in pages: a scan of 5 MiB and a
// prefetch of as much.
func TestStateLargeReadsArePaged(t *testing.T) {
	m := state.NewMemory()
	tr := newStateTransform(t, testStatePluginName, Config{})
	n := pluginpb.StateReplyBytes/(200<<10) + 5
	_, b := batch(t, m, tr, onPartition(0, fmt.Sprintf("fill v %d", n)))
	commit(t, b, 1)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("v%03d", i)
	}
	got, _ := batch(t, m, tr, onPartition(0, "prefetch "+strings.Join(keys, " "), "scan v", "get "+keys[n-1]))
	parts := strings.Split(got, ",")
	if len(parts) != 3 || parts[0] != "ok" || strings.Count(parts[1], "=204800 bytes") != n || parts[2] != string(make([]byte, 200<<10)) {
		t.Fatalf("paged reads: %d entries scanned (want %d), answers %.80q", strings.Count(parts[1], "="), n, got)
	}
}

func TestStateRefusesBadWrites(t *testing.T) {
	tests := []struct {
		name, plugin, value, want string
	}{
		{"task not in the batch", testBadStatePluginName, "bad-task", "wrote the state of task 9, which is not a task of its batch ([2])"},
		{"key over the limit", testBadStatePluginName, "bad-key", "wrote a state key of 4097 bytes, over the limit of 4096 bytes"},
		{"value over the limit", testBadStatePluginName, "bad-value", "wrote a state value of 262145 bytes"},
		{"corrupt encoding", testBadStatePluginName, "bad-encoding", "sent corrupt state writes"},
		{"the SDK refuses a task not in the batch", testStatePluginName, "other-task", "state of task 1002: not a task of this batch (its tasks are [2])"},
		{"the SDK fails the batch of a dropped refusal", testStatePluginName, "big-ignored", "state value of 262145 bytes for key \"big\" is over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := state.NewMemory()
			// The bad plugin reads its request from the message.
			tr := newStateTransform(t, tt.plugin, Config{Name: "bad", NoSharedMemory: true})
			ctx, b := m.Begin(context.Background())
			_, _, err := tr.Process(ctx, onPartition(2, tt.value))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") || engine.IsRetryable(err) {
				t.Fatalf("want one line, not retryable: %q", err)
			}
			commit(t, b, 1)
			if s := m.Snapshot(2); len(s) != 0 {
				t.Fatalf("a refused answer changed the state: %v", s)
			}
		})
	}
}

// A plugin that reads state in a step without `state: true` learns how
// to fix it; a stateful step in a pipeline without state says so.
func TestStateNeedsBothSides(t *testing.T) {
	plain := newTransform(t, Config{Plugin: linkTestBinary(t, testStatePluginName), Name: "plain"})
	_, _, err := plain.Process(context.Background(), onPartition(0, "get k"))
	if err == nil || !strings.Contains(err.Error(), "add `state: true` to its plugin step") {
		t.Fatalf("err = %v, want sdk.ErrNoState's advice", err)
	}
	stateful := newStateTransform(t, testStatePluginName, Config{})
	_, _, err = stateful.Process(context.Background(), onPartition(0, "get k"))
	if err == nil || !strings.Contains(err.Error(), "keeps state (state: true), but the pipeline keeps none") {
		t.Fatalf("err = %v, want the missing state backend named", err)
	}
}

func TestStateLimitsMatchTheStore(t *testing.T) {
	if pluginpb.MaxStateKeyBytes != state.MaxKeyBytes || pluginpb.MaxStateValueBytes != state.MaxValueBytes || sdk.MaxStateValueBytes != state.MaxValueBytes {
		t.Fatalf("plugin state limits (key %d, value %d) differ from the store's (key %d, value %d)",
			pluginpb.MaxStateKeyBytes, pluginpb.MaxStateValueBytes, state.MaxKeyBytes, state.MaxValueBytes)
	}
}
