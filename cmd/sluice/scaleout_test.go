package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Scaling out (docs/ARCHITECTURE.md §11): several `sluice run` processes of
// one pipeline share its tasks through the source's consumer group and
// commit exactly once, whatever happens to them.

// runner is one `sluice run` process whose log is watched for the tasks
// it runs.
type runner struct {
	name string
	cmd  *exec.Cmd

	mu    sync.Mutex
	tasks string // the latest "running tasks" list, "" before any
	log   strings.Builder
	done  chan struct{}
}

var runningTasks = regexp.MustCompile(`msg="running tasks".* tasks="?\[([0-9 ]*)\]`)

func startRunner(t *testing.T, name string, args ...string) *runner {
	t.Helper()
	r := &runner{name: name, cmd: sluice(t, append([]string{"run", "--log-level", "info"}, args...)...), done: make(chan struct{})}
	out, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go r.watch(out)
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
		if t.Failed() {
			t.Logf("log of %s:\n%s", r.name, r.logText())
		}
	})
	return r
}

func (r *runner) watch(out io.Reader) {
	defer close(r.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		r.mu.Lock()
		r.log.WriteString(line + "\n")
		if m := runningTasks.FindStringSubmatch(line); m != nil {
			r.tasks = m[1]
		}
		r.mu.Unlock()
	}
	r.cmd.Wait()
}

func (r *runner) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// running returns the tasks the process last said it runs.
func (r *runner) running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Fields(r.tasks)
}

// signal sends sig and, for a stopping signal, waits for the exit.
func (r *runner) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not exit within a minute of %s", r.name, sig)
	}
	if sig == syscall.SIGTERM && r.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("%s exited %d after SIGTERM", r.name, r.cmd.ProcessState.ExitCode())
	}
}

// awaitSplit waits until the live runners hold every task between them,
// each at least one, none twice.
func awaitSplit(t *testing.T, tasks int, live ...*runner) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		held := map[string]int{}
		busy := true
		for _, r := range live {
			ts := r.running()
			busy = busy && len(ts) > 0
			for _, task := range ts {
				held[task]++
			}
		}
		split := busy && len(held) == tasks
		for _, n := range held {
			split = split && n == 1
		}
		if split {
			return
		}
		if time.Now().After(deadline) {
			var got []string
			for _, r := range live {
				got = append(got, fmt.Sprintf("%s: %v", r.name, r.running()))
			}
			t.Fatalf("tasks not split over the %d processes within 90s: %s", len(live), strings.Join(got, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// produceRange writes values from..to-1 round-robin, acks=all.
func produceRange(t *testing.T, cl *kgo.Client, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestScaleOutPostgres: three processes of one pipeline over a 12-partition
// topic of a standalone broker, into PostgreSQL. Each gets tasks; one is
// killed with SIGKILL mid-stream and restarted, a fourth joins, two stop
// with SIGTERM, while a producer keeps writing; in the end every value is
// in the table exactly once.
func TestScaleOutPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several pipelines for a while")
	}
	dsn := os.Getenv("SLUICE_TEST_PG_DSN")
	if dsn == "" {
		t.Skip(`SLUICE_TEST_PG_DSN is not set: run eval "$(.ci/postgres.sh)" first`)
	}
	const partitions = 12
	dir := t.TempDir()
	addr := freeAddr(t)
	broker := sluice(t, "broker", "--data", filepath.Join(dir, "broker"), "--listen", addr)
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	waitForBroker(t, addr)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "events", partitions)

	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var b [4]byte
	rand.Read(b[:])
	schema := "scale_" + hex.EncodeToString(b[:])
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })

	spec := filepath.Join(dir, "p.yaml")
	// A short session: a killed process's tasks move after 6s, not 45s.
	os.WriteFile(spec, fmt.Appendf(nil, `version: 1
name: scale
source:
  kafka: {brokers: [%q], topics: [events], session-timeout: 6s}
batch: {interval: 50ms, max-records-per-partition: 100}
sink:
  postgres: {dsn: %q, table: %s.out, create-table: true, columns: {v: value}}
`, addr, dsn, schema), 0o644)
	start := func(name string) *runner {
		return startRunner(t, name, spec, "--data", filepath.Join(dir, "data-"+name))
	}

	produced := 0
	write := func(n int) {
		produceRange(t, cl, produced, produced+n)
		produced += n
	}
	write(3000)
	a, b1, c := start("a"), start("b"), start("c")
	awaitSplit(t, partitions, a, b1, c)
	write(3000)

	b1.stop(t, syscall.SIGKILL)
	write(3000)
	b2 := start("b-again")
	d := start("d")
	awaitSplit(t, partitions, a, b2, c, d)
	write(3000)

	a.stop(t, syscall.SIGTERM)
	c.stop(t, syscall.SIGTERM)
	awaitSplit(t, partitions, b2, d)
	write(3000)

	// Everything lands, once.
	deadline := time.Now().Add(2 * time.Minute)
	var rows int
	for {
		if err := db.QueryRow(ctx, "SELECT count(*) FROM "+schema+".out").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows >= produced || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b2.stop(t, syscall.SIGTERM)
	d.stop(t, syscall.SIGTERM)
	var distinct, dups int
	if err := db.QueryRow(ctx, "SELECT count(DISTINCT v), count(*) - count(DISTINCT v) FROM "+schema+".out").Scan(&distinct, &dups); err != nil {
		t.Fatal(err)
	}
	if distinct != produced || dups != 0 {
		t.Fatalf("%d distinct values of %d produced, %d duplicates", distinct, produced, dups)
	}
	var tasks int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM "+schema+".sluice_task_checkpoints WHERE pipeline = 'scale'").Scan(&tasks); err != nil {
		t.Fatal(err)
	}
	if tasks != partitions {
		t.Fatalf("%d task checkpoints, want %d", tasks, partitions)
	}
}
