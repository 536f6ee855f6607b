package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testhook"
)

// killAtCleanerStep makes the process kill itself (SIGKILL: no deferred
// code, no clean shutdown) at the first log-clean step whose name starts
// with prefix.
func killAtCleanerStep(prefix string) {
	testhook.CleanerStep = func(step string) {
		if strings.HasPrefix(step, prefix) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// brokerProc is a `sluice broker` child process and what it logged.
type brokerProc struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{} // closed when the process has exited
}

func startBrokerEnv(t *testing.T, data string, env ...string) *brokerProc {
	t.Helper()
	b := &brokerProc{cmd: sluice(t, "broker", "--data", data, "--listen", "127.0.0.1:0", "--tls-listen", "off"), done: make(chan struct{})}
	b.cmd.Env = append(b.cmd.Env, env...)
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.cmd.Process.Kill(); <-b.done })
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		b.log.WriteString(sc.Text() + "\n")
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			b.addr = m[1]
			break
		}
	}
	if b.addr == "" {
		t.Fatal("sluice broker did not log its address")
	}
	go func() {
		for sc.Scan() {
			b.mu.Lock()
			b.log.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
		}
		b.cmd.Wait()
		close(b.done)
	}()
	return b
}

func (b *brokerProc) logged() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// TestCleanerCrashRealBroker kills a real `sluice broker` at a step of a
// log clean (before the swap is committed, right after, between the
// renames, before the swap file goes) and opens the data again: the
// compacted topic read from the start holds the latest value of every key
// at the offset it was written at, and a clean the swap file committed is
// finished at the open.
func TestCleanerCrashRealBroker(t *testing.T) {
	// Each hook runs after its step: after "remove cleaner-swap" the clean
	// is whole and there is nothing left to finish.
	for _, step := range []string{"cleaned", "manifest", "checkpoint", "rename", "remove cleaner-swap"} {
		t.Run(strings.ReplaceAll(step, " ", "_"), func(t *testing.T) {
			data := t.TempDir()
			b := startBrokerEnv(t, data, "SLUICE_TEST_KILL_AT_CLEANER_STEP="+step)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ProducerLinger(0))
			if err != nil {
				t.Fatal(err)
			}
			adm := kadm.NewClient(cl)
			if r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"),
				"segment.bytes": kadm.StringPtr("4096")}, "table"); err != nil || r.Err != nil {
				t.Fatalf("create topic: %v %v", err, r.Err)
			}
			want := map[string]int64{} // key -> offset of its last record
			vals := map[string]string{}
			for i := range 600 {
				k, v := fmt.Sprintf("k%02d", i%30), fmt.Sprintf("v%d", i)
				r := &kgo.Record{Topic: "table", Key: []byte(k), Value: []byte(v)}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
				want[k], vals[k] = r.Offset, v
			}
			// Lowering the ratio wakes the cleaner: it cleans now, and the
			// hook kills the broker at the step.
			if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.01")}}, "table"); err != nil {
				t.Fatal(err)
			}
			cl.Close()
			select {
			case <-b.done:
			case <-ctx.Done():
				t.Fatalf("the broker was not killed at clean step %q; log:\n%s", step, b.logged())
			}
			b2 := startBrokerEnv(t, data)
			// Partitions open before the broker listens: the line is there.
			committed := step != "cleaned" && step != "remove cleaner-swap"
			if committed != strings.Contains(b2.logged(), "finishing a log clean") {
				t.Fatalf("after a kill at %q the reopened broker should finish the clean: %v; log:\n%s", step, committed, b2.logged())
			}
			cl2, err := kgo.NewClient(kgo.SeedBrokers(b2.addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"table": {0: kgo.NewOffset().AtStart()}}))
			if err != nil {
				t.Fatal(err)
			}
			defer cl2.Close()
			got := map[string]string{}
			gotOff := map[string]int64{}
			last := int64(-1)
			for last < 599 {
				fs := cl2.PollFetches(ctx)
				if err := fs.Err(); err != nil {
					t.Fatalf("fetch after the crash: %v", err)
				}
				fs.EachRecord(func(r *kgo.Record) {
					if r.Offset <= last {
						t.Fatalf("offset %d after %d", r.Offset, last)
					}
					last = r.Offset
					got[string(r.Key)], gotOff[string(r.Key)] = string(r.Value), r.Offset
				})
			}
			for k, off := range want {
				if got[k] != vals[k] || gotOff[k] != off {
					t.Fatalf("key %s: read %q at %d, last written %q at %d", k, got[k], gotOff[k], vals[k], off)
				}
			}
		})
	}
}
