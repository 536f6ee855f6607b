package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestDaemonChainSIGKILL runs two chained pipelines in `sluice daemon` on
// its built-in broker: the first generates values, rejects the ones ending
// in 3 and writes the rest to topic mid in Kafka transactions (dead letters
// to mid-dlq); the second reads mid into files, in each ingestion mode. The
// daemon is SIGKILLed twice, which leaves aborted transactions in mid, and
// restarted: every value is in the files or in mid-dlq exactly once.
func TestDaemonChainSIGKILL(t *testing.T) {
	for _, mode := range []string{"direct", "receiver"} {
		t.Run(mode, func(t *testing.T) { testDaemonChainSIGKILL(t, mode) })
	}
}

func testDaemonChainSIGKILL(t *testing.T, mode string) {
	const count = 30000
	dir := t.TempDir()
	pdir, out := filepath.Join(dir, "pipelines"), filepath.Join(dir, "out")
	os.MkdirAll(pdir, 0o755)
	os.WriteFile(filepath.Join(pdir, "a.yaml"), []byte(fmt.Sprintf(`version: 1
name: produce-mid
source:
  generate: {count: %d, partitions: 3, rate: 10000}
batch: {interval: 20ms, max-records-per-partition: 500}
transforms:
  - plugin: filter
    settings: {expr: 'int(value) %% 10 != 3 || fromJSON(value).x == 1'}
sink:
  kafka: {brokers: [builtin], topic: mid}
dead-letter: {topic: mid-dlq}
`, count)), 0o644)
	os.WriteFile(filepath.Join(pdir, "b.yaml"), []byte(fmt.Sprintf(`version: 1
name: mid-to-file
source:
  kafka: {brokers: [builtin], topics: [mid], mode: %s, block-interval: 50ms}
batch: {interval: 20ms}
sink:
  file: {path: %s, format: raw, roll: {bytes: 16384, interval: 200ms}}  # small, to see output while it runs: see writePipeline
`, mode, out)), 0o644)
	brokerAddr := freeAddr(t)
	start := func() *os.Process {
		cmd := sluice(t, "daemon", "--pipelines", pdir, "--data", filepath.Join(dir, "data"),
			"--broker-listen", brokerAddr, "--http", freeAddr(t))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitForBroker(t, brokerAddr)
		return cmd.Process
	}
	dead := func() []string { return kafkatest.Values(kafkatest.ReadCommitted(t, []string{brokerAddr}, "mid-dlq")) }
	for round := 1; round <= 2; round++ {
		p := start()
		waitForOutput(t, out, round*count/5)
		p.Signal(syscall.SIGKILL)
		p.Wait()
	}
	p := start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		lines, d := filetest.Lines(t, out), dead()
		if len(lines)+len(d) >= count {
			checkSplit(t, lines, d, count, true)
			break
		}
		checkSplit(t, lines, d, count, false)
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d values written, %d dead letters, of %d", len(lines), len(d), count)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.Signal(syscall.SIGTERM)
	if st, err := p.Wait(); err != nil || !st.Success() {
		t.Fatalf("sluice daemon must exit 0 on SIGTERM: %v %v", st, err)
	}
}
