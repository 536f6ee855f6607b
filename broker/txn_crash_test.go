package broker

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	// The open transaction's producer id and epoch, from the child.
	desc := kmsg.NewPtrDescribeTransactionsRequest()
	desc.TransactionalIDs = []string{"open"}
	dresp, err := desc.RequestWith(ctxT(t), kgoBroker(t, addr))
	if err != nil || dresp.TransactionStates[0].State != "Ongoing" {
		t.Fatalf("describe before the kill: %v %+v", err, dresp)
	}
	before := dresp.TransactionStates[0]
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
	// The abort fenced the epoch the producer had before the crash.
	if d, _ := b.txns.Describe("open"); d.ProducerID != before.ProducerID || d.Epoch <= before.ProducerEpoch {
		t.Fatalf("after the restart %+v, before %+v", d, before)
	}
	zombie := &txnRequests{t: t, r: kgoBroker(t, addr2), id: "open", pid: before.ProducerID, ep: before.ProducerEpoch}
	if code := zombie.addPartition(3, "crash-tx", 0); code != kerr.ProducerFenced.Code {
		t.Fatalf("the pre-crash epoch after the restart: %v", kerr.ErrorForCode(code))
	}
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

// TestTransactionsSurviveSIGKILLUnderLoad kills the broker process while
// four producers run transactions flat out. After the restart every
// transaction is all or nothing in read_committed, every acknowledged
// commit is there, every abort absent, and the LSO reaches the end once
// the open transactions time out.
func TestTransactionsSurviveSIGKILLUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	dir := t.TempDir()
	addr, cmd := startChild(t, dir)
	createTopic(t, newKgo(t, addr), "load", 3)
	const producers, perTxn = 4, 5
	var mu sync.Mutex
	committed, aborted := map[string]bool{}, map[string]bool{}
	enough := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var wg sync.WaitGroup
	for w := range producers {
		prod := newKgo(t, addr, kgo.TransactionalID(fmt.Sprintf("load-%d", w)), kgo.DefaultProduceTopic("load"),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.TransactionTimeout(time.Second))
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("w%d-t%04d", w, i)
				if prod.BeginTransaction() != nil {
					return
				}
				for _, v := range values(name, perTxn) {
					prod.Produce(ctx, &kgo.Record{Value: []byte(v)}, nil)
				}
				commit := i%4 != 3
				if prod.Flush(ctx) != nil || prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)) != nil {
					return // the broker is gone
				}
				mu.Lock()
				if commit {
					committed[name] = true
				} else {
					aborted[name] = true
				}
				if len(committed) >= 60 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatal("no transactions committed")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	cancel()
	wg.Wait()

	b, addr2 := testBrokerDir(t, dir, Options{})
	eventually(t, "every transaction decided and complete", func() bool {
		for _, d := range b.txns.List() {
			if d.State != txn.CompleteCommit && d.State != txn.CompleteAbort && d.State != txn.Empty {
				return false
			}
		}
		return true
	})
	checkStable(t, b, "load", 3)
	byTxn := map[string]int{}
	for _, v := range readToSentinel(t, addr2, "load", 3, true) {
		byTxn[v[:strings.LastIndex(v, "-")]]++
	}
	mu.Lock()
	defer mu.Unlock()
	for name, n := range byTxn {
		if n != perTxn {
			t.Errorf("transaction %s: %d of its %d records visible", name, n, perTxn)
		}
		if aborted[name] {
			t.Errorf("aborted transaction %s visible", name)
		}
	}
	for name := range committed {
		if byTxn[name] == 0 {
			t.Errorf("acknowledged commit %s lost", name)
		}
	}
	t.Logf("%d commits and %d aborts acknowledged before the kill; %d transactions visible after", len(committed), len(aborted), len(byTxn))
}
