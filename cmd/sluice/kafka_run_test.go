package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitForBroker waits until addr accepts connections.
func waitForBroker(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker at %s never came up: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func createTopic(t *testing.T, cl *kgo.Client, name string, partitions int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 5000
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Topics[0].ErrorCode; c != 0 && c != 36 { // 36: already exists
		t.Fatalf("create topic: error code %d", c)
	}
}

// TestRunBuiltinBrokerSIGKILL runs a pipeline that reads the built-in
// broker, in each ingestion mode, produces to that broker with franz-go
// while the pipeline runs, kills the pipeline (and so its broker) with
// SIGKILL, and restarts it: every acknowledged record is written exactly
// once.
func TestRunBuiltinBrokerSIGKILL(t *testing.T) {
	for _, mode := range []string{"direct", "receiver"} {
		t.Run(mode, func(t *testing.T) { testRunBuiltinBrokerSIGKILL(t, mode) })
	}
}

func testRunBuiltinBrokerSIGKILL(t *testing.T, mode string) {
	dir := t.TempDir()
	addr := freeAddr(t)
	spec := filepath.Join(dir, "p.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf(`version: 1
name: kill-%s
source:
  kafka: {brokers: [builtin], topics: [events], mode: %s, block-interval: 50ms}
batch: {interval: 50ms, max-records-per-partition: 500}
sink:
  file: {path: %s, format: raw, roll: {bytes: 16384, interval: 200ms}}  # small, to see output while it runs: see writePipeline
`, mode, mode, filepath.Join(dir, "out"))), 0o644)
	start := func() *os.Process {
		cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--broker-listen", addr, "--idle-exit", "5s")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd.Process
	}
	proc := start()
	waitForBroker(t, addr)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	createTopic(t, cl, "events", 3)
	const total = 6000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < total/2; i++ {
		cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	out := filepath.Join(dir, "out")
	waitForOutput(t, out, 1)
	proc.Signal(syscall.SIGKILL)
	proc.Wait()
	checkExactlyOnce(t, filetest.Lines(t, out), total, false)

	// Restart: the broker reopens its log; produce the second half.
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--broker-listen", addr, "--idle-exit", "5s")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForBroker(t, addr)
	cl, err = kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := total / 2; i < total; i++ {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	checkExactlyOnce(t, filetest.Lines(t, out), total, true)
}

// --wait lets a console tool start before its broker, as a script that
// starts both does; without it, or past it, nothing listening is one line.
func TestConsoleToolWaitsForBroker(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)

	out, err := sluice(t, "topic", "list", "--bootstrap", addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nothing listens at "+addr) {
		t.Fatalf("topic list without a broker = %v:\n%s\nwant it to fail at once saying nothing listens", err, out)
	}
	out, err = sluice(t, "topic", "list", "--bootstrap", addr, "--wait", "300ms").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no broker within --wait 300ms: nothing listens at "+addr) {
		t.Fatalf("topic list --wait 300ms without a broker = %v:\n%s", err, out)
	}

	create := sluice(t, "topic", "create", "waited", "--partitions", "2", "--bootstrap", addr, "--wait", "60s")
	stderr, err := create.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	create.Stdout = &stdout
	if err := create.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { create.Process.Kill() })
	// The broker starts only once the tool says it waits for one.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "waiting for a broker to listen") {
	}
	go io.Copy(io.Discard, stderr)
	broker := sluice(t, "broker", "--data", filepath.Join(dir, "broker"), "--listen", addr)
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Signal(syscall.SIGTERM); broker.Wait() })
	if err := create.Wait(); err != nil || stdout.String() != "created topic waited\n" {
		t.Fatalf("topic create --wait = %v, output %q; want the topic created once the broker listened", err, stdout.String())
	}
}
