package broker

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker/txn"
)

// startChild runs a broker process on dir (see runCrashChild) and returns
// its address and the command, which the test kills.
func startChild(t *testing.T, dir string, env ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), crashChildEnv+"="+dir), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child broker did not start: %q %v", line, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "ADDR ")), cmd
}

func checkStable(t *testing.T, b *Broker, topic string, partitions int32) {
	t.Helper()
	for p := range partitions {
		part := b.topics.partition(topic, p)
		if lso, end := part.LastStableOffset(), part.EndOffset(); lso != end {
			t.Fatalf("%s/%d: LSO %d, end %d", topic, p, lso, end)
		}
	}
}

// TestTransactionSurvivesSIGKILLMidTransaction kills a broker process with
// one transaction committed and one open. After the restart the committed
// one stays committed, the open one is aborted when its timeout passes (it
// counts from the transaction's start) and the LSO reaches the log end.
func TestTransactionSurvivesSIGKILLMidTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	dir := t.TempDir()
	addr, cmd := startChild(t, dir)
	createTopic(t, newKgo(t, addr), "crash-tx", 2)
	opts := []kgo.Opt{kgo.DefaultProduceTopic("crash-tx"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}
	done := newKgo(t, addr, append(opts, kgo.TransactionalID("done"))...)
	committed := values("done", 10)
	if err := runTxn(t, done, committed, true); err != nil {
		t.Fatal(err)
	}
	open := newKgo(t, addr, append(opts, kgo.TransactionalID("open"), kgo.TransactionTimeout(time.Second))...)
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range values("open", 10) {
		if err := open.ProduceSync(ctxT(t), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	done.Close()
	open.Close()

	b, addr2 := testBrokerDir(t, dir, Options{})
	if d, _ := b.txns.Describe("done"); d.State != txn.CompleteCommit {
		t.Fatalf("committed transaction after the crash: %s", d.State)
	}
	eventually(t, "the open transaction's timeout abort", func() bool {
		d, _ := b.txns.Describe("open")
		return d.State == txn.CompleteAbort
	})
	checkStable(t, b, "crash-tx", 2)
	if got := readToSentinel(t, addr2, "crash-tx", 2, true); !slices.Equal(got, sorted(committed)) {
		t.Fatalf("read_committed after the crash: %v", got)
	}
	if got := readToSentinel(t, addr2, "crash-tx", 2, false); len(got) != 20 {
		t.Fatalf("read_uncommitted after the crash: %d records, want 20", len(got))
	}
}

// TestTransactionCommitSurvivesSIGKILLBeforeMarkers kills the broker
// process after a commit decision is durable but before any marker (and,
// second, after the first of two markers). The restarted broker writes the
// markers: the transaction is committed and the LSO reaches the end.
func TestTransactionCommitSurvivesSIGKILLBeforeMarkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	for _, before := range []string{"0", "1"} {
		t.Run("before marker "+before, func(t *testing.T) {
			dir := t.TempDir()
			addr, cmd := startChild(t, dir, crashMarkerEnv+"="+before)
			admin := newKgo(t, addr)
			createTopic(t, admin, "prep", 2)
			prod := newKgo(t, addr, kgo.TransactionalID("prep"), kgo.DefaultProduceTopic("prep"),
				kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
			vals := values("p", 10)
			if err := prod.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if err := prod.ProduceSync(ctxT(t), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			// The commit kills the broker; its answer never comes.
			ctx, cancel := context.WithCancel(ctxT(t))
			ended := make(chan error, 1)
			go func() { ended <- prod.EndTransaction(ctx, kgo.TryCommit) }()
			cmd.Wait()
			cancel()
			if err := <-ended; err == nil {
				t.Fatal("commit acknowledged by a broker that died before its markers")
			}
			prod.Close()
			admin.Close()

			b, addr2 := testBrokerDir(t, dir, Options{})
			if d, _ := b.txns.Describe("prep"); d.State != txn.CompleteCommit {
				t.Fatalf("state after the restart: %s", d.State)
			}
			checkStable(t, b, "prep", 2)
			if got := readToSentinel(t, addr2, "prep", 2, true); !slices.Equal(got, sorted(vals)) {
				t.Fatalf("read_committed after the restart: %v", got)
			}
		})
	}
}
