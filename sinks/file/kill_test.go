package file

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

const (
	killTotal = 20_000 // records the helper writes in all
	killBatch = 137    // records per epoch; odd, so epochs straddle kills unevenly
	// killRollBytes rolls every ~5 epochs (137 values of ~5 bytes each),
	// so kills land before, inside and after rolls of part files that
	// hold several epochs.
	killRollBytes = 3000
)

// TestKillHelper is not a test: TestSIGKILL runs it in a child process,
// which writes the sequence 0..killTotal-1 through the sink, resuming from
// what the directory says, and prints a line after every commit.
func TestKillHelper(t *testing.T) {
	dir := os.Getenv("SLUICE_KILL_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestSIGKILL")
	}
	ctx := context.Background()
	roll := &RollConfig{PerEpoch: true}
	if os.Getenv("SLUICE_KILL_HELPER_ROLL") == "bytes" {
		roll = &RollConfig{Bytes: killRollBytes}
	}
	s, err := New(Config{Path: dir, Format: "raw", Roll: roll}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	epoch, at, err := s.Open(ctx, "seq")
	if err != nil {
		t.Fatal(err)
	}
	tp := engine.TopicPartition{Topic: "seq"}
	next := at[tp]
	for next < killTotal {
		epoch++
		n := min(killBatch, killTotal-next)
		recs := make([]engine.Record, n)
		for i := range recs {
			recs[i] = engine.Record{Topic: "seq", Offset: next + int64(i), Value: strconv.AppendInt(nil, next+int64(i), 10)}
		}
		if err := s.Write(ctx, epoch, recs); err != nil {
			t.Fatal(err)
		}
		next += n
		if err := s.Commit(ctx, epoch, engine.Positions{tp: next}); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("committed %d\n", epoch)
	}
	// As the engine does when a pipeline stops: roll the open part file.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSIGKILL kills a real writer process at arbitrary points of its
// commit loop and restarts it, with one part file per epoch and with part
// files that roll by size: in the end the output holds every number
// exactly once, in order, and Open agrees with it.
func TestSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, roll := range []string{"per-epoch", "bytes"} {
		t.Run(roll, func(t *testing.T) { testSIGKILL(t, roll) })
	}
}

func testSIGKILL(t *testing.T, roll string) {
	dir := t.TempDir()
	run := func(killAfter int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$")
		cmd.Env = append(os.Environ(), "SLUICE_KILL_HELPER_DIR="+dir, "SLUICE_KILL_HELPER_ROLL="+roll)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen := 0
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "committed ") {
				seen++
			}
			if killAfter > 0 && seen == killAfter {
				cmd.Process.Kill()
				break
			}
		}
		err = cmd.Wait()
		if killAfter == 0 && err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	for _, k := range []int{3, 17, 1, 40} {
		run(k)
	}
	run(0)

	var got []string
	for _, f := range visible(t, dir) {
		got = append(got, readValues(t, filepath.Join(dir, f), "raw")...)
	}
	if len(got) != killTotal {
		t.Fatalf("%d values visible, want %d", len(got), killTotal)
	}
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("value %d is %q: lost or duplicated output", i, v)
		}
	}
	s := newSink(t, dir, "raw")
	if _, at := open(t, s, "seq"); at[engine.TopicPartition{Topic: "seq"}] != killTotal {
		t.Fatalf("Open positions = %v, want seq/0:%d", at, killTotal)
	}
	assertNoLeftovers(t, filepath.Join(dir), "seq")
}
