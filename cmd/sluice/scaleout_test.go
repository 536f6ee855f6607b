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
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks/file/filetest"
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

func startRunner(t *testing.T, name string, env []string, args ...string) *runner {
	t.Helper()
	r := &runner{name: name, cmd: sluice(t, append([]string{"run", "--log-level", "info"}, args...)...), done: make(chan struct{})}
	r.cmd.Env = append(r.cmd.Env, env...)
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

// scaleOut is a broker with a 12-partition topic, a producer and a
// pipeline file into a fresh PostgreSQL schema, a fresh directory or
// topic "out" on the same broker.
type scaleOut struct {
	t        *testing.T
	dir      string
	spec     string
	cl       *kgo.Client
	db       *pgx.Conn // postgres
	schema   string
	out      string   // file sink directory
	kafka    []string // kafka sink: the broker, read read_committed
	produced int
}

const scaleOutPartitions = 12

// newScaleOut starts the built-in broker as its own process, or with
// kfake, franz-go's independent Kafka, in the test process (an external
// cluster to the pipelines); sink is postgres, file or kafka.
func newScaleOut(t *testing.T, kfakeCluster bool, sink string) *scaleOut {
	t.Helper()
	if testing.Short() {
		t.Skip("runs several pipelines for a while")
	}
	dsn := os.Getenv("SLUICE_TEST_PG_DSN")
	if dsn == "" && sink == "postgres" {
		t.Skip(`SLUICE_TEST_PG_DSN is not set: run eval "$(.ci/postgres.sh)" first`)
	}
	s := &scaleOut{t: t, dir: t.TempDir()}
	var addr string
	if kfakeCluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(scaleOutPartitions, "events"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		addr = c.ListenAddrs()[0]
	} else {
		addr = freeAddr(t)
		broker := sluice(t, "broker", "--data", filepath.Join(s.dir, "broker"), "--listen", addr)
		if err := broker.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
		waitForBroker(t, addr)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	s.cl = cl
	createTopic(t, cl, "events", scaleOutPartitions)

	var sinkBlock string
	if sink == "postgres" {
		ctx := context.Background()
		if s.db, err = pgx.Connect(ctx, dsn); err != nil {
			t.Fatal(err)
		}
		var b [4]byte
		rand.Read(b[:])
		s.schema = "scale_" + hex.EncodeToString(b[:])
		if _, err := s.db.Exec(ctx, "CREATE SCHEMA "+s.schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.db.Exec(context.Background(), "DROP SCHEMA "+s.schema+" CASCADE")
			s.db.Close(context.Background())
		})
		sinkBlock = fmt.Sprintf("postgres: {dsn: %q, table: %s.out, create-table: true, columns: {v: value}}", dsn, s.schema)
	} else if sink == "kafka" {
		// On the source's cluster: split into tasks, KIP-447 style.
		s.kafka = []string{addr}
		sinkBlock = fmt.Sprintf("kafka: {brokers: [%q], topic: out}", addr)
	} else {
		s.out = filepath.Join(s.dir, "out")
		sinkBlock = fmt.Sprintf("file: {path: %q, format: raw}", s.out)
	}
	s.spec = filepath.Join(s.dir, "p.yaml")
	// A short session: a killed process's tasks move after 6s, not 45s.
	os.WriteFile(s.spec, fmt.Appendf(nil, `version: 1
name: scale
source:
  kafka: {brokers: [%q], topics: [events], session-timeout: 6s}
batch: {interval: 50ms, max-records-per-partition: 100}
sink:
  %s
`, addr, sinkBlock), 0o644)
	return s
}

func (s *scaleOut) start(name string, env ...string) *runner {
	return startRunner(s.t, name, env, s.spec, "--data", filepath.Join(s.dir, "data-"+name))
}

func (s *scaleOut) write(n int) {
	s.t.Helper()
	produceRange(s.t, s.cl, s.produced, s.produced+n)
	s.produced += n
}

// values returns every value in the output, in any order.
func (s *scaleOut) values() []string {
	s.t.Helper()
	if s.kafka != nil {
		return kafkatest.Values(kafkatest.ReadCommitted(s.t, s.kafka, "out"))
	}
	if s.db == nil {
		return filetest.Lines(s.t, s.out)
	}
	rows, err := s.db.Query(context.Background(), "SELECT convert_from(v, 'UTF8') FROM "+s.schema+".out")
	if err != nil {
		s.t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.t.Fatal(err)
	}
	return vs
}

// rows counts the output's records.
func (s *scaleOut) rows() int { return len(s.values()) }

// awaitAll waits until the table holds as many rows as were produced.
func (s *scaleOut) awaitAll() {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for s.rows() < s.produced && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce asserts every produced value is in the output once.
func (s *scaleOut) checkExactlyOnce() {
	s.t.Helper()
	checkExactlyOnce(s.t, s.values(), s.produced, true)
}

// TestScaleOut: three processes of one pipeline over a 12-partition topic,
// into PostgreSQL, one directory or a topic. Each gets tasks; one is
// killed with SIGKILL mid-stream and restarted, a fourth joins, two stop
// with SIGTERM, while values keep coming; in the end every value is in the
// table exactly once.
func TestScaleOut(t *testing.T) {
	for _, sink := range []string{"postgres", "file", "kafka"} {
		for name, kfakeCluster := range map[string]bool{"builtin": false, "kfake": true} {
			t.Run(sink+"/"+name, func(t *testing.T) { testScaleOut(t, newScaleOut(t, kfakeCluster, sink)) })
		}
	}
}

func testScaleOut(t *testing.T, s *scaleOut) {
	s.write(3000)
	a, b1, c := s.start("a"), s.start("b"), s.start("c")
	awaitSplit(t, scaleOutPartitions, a, b1, c)
	s.write(3000)

	b1.stop(t, syscall.SIGKILL)
	s.write(3000)
	b2, d := s.start("b-again"), s.start("d")
	awaitSplit(t, scaleOutPartitions, a, b2, c, d)
	s.write(3000)

	a.stop(t, syscall.SIGTERM)
	c.stop(t, syscall.SIGTERM)
	awaitSplit(t, scaleOutPartitions, b2, d)
	s.write(3000)

	s.awaitAll()
	b2.stop(t, syscall.SIGTERM)
	d.stop(t, syscall.SIGTERM)
	s.checkExactlyOnce()
	if s.db != nil {
		var tasks int
		if err := s.db.QueryRow(context.Background(), "SELECT count(*) FROM "+s.schema+".sluice_task_checkpoints WHERE pipeline = 'scale'").Scan(&tasks); err != nil {
			t.Fatal(err)
		}
		if tasks != scaleOutPartitions {
			t.Fatalf("%d task checkpoints, want %d", tasks, scaleOutPartitions)
		}
	}
}

// TestScaleOutZombie: a process is frozen (SIGSTOP) between writing a
// batch and committing it, and stays frozen past its session timeout; the
// other process takes all its tasks over and commits them. Thawed
// (SIGCONT), the zombie goes on to commit its batch: the tasks' epochs
// refuse it, so none of its late output becomes visible, and every value
// is in the table once.
func TestScaleOutZombie(t *testing.T) {
	for _, sink := range []string{"postgres", "file", "kafka"} {
		t.Run(sink, func(t *testing.T) { testScaleOutZombie(t, newScaleOut(t, false, sink)) })
	}
	// The kafka sink's fence is the group's (KIP-447): check it on
	// another implementation of the group coordinator too.
	t.Run("kafka-kfake", func(t *testing.T) { testScaleOutZombie(t, newScaleOut(t, true, "kafka")) })
}

func testScaleOutZombie(t *testing.T, s *scaleOut) {
	s.write(3000)
	marker := filepath.Join(s.dir, "about-to-commit")
	zombie := s.start("zombie", "SLUICE_TEST_FREEZE_BEFORE_COMMIT="+marker)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first process never got to a commit")
		}
		time.Sleep(time.Millisecond)
	}
	zombie.cmd.Process.Signal(syscall.SIGSTOP)
	if n := s.rows(); n != 0 {
		t.Fatalf("%d rows visible before the first commit", n)
	}

	b := s.start("b")
	awaitSplit(t, scaleOutPartitions, b) // past the 6s session: b holds every task
	s.write(3000)
	if s.kafka == nil {
		s.awaitAll()
	}
	// Into Kafka the zombie's open transaction holds b's output back from
	// read_committed readers until it ends: thawed, the zombie's offsets
	// name a member the group dropped, and its round is aborted.
	zombie.cmd.Process.Signal(syscall.SIGCONT)
	deadline = time.Now().Add(time.Minute)
	for !strings.Contains(zombie.logText(), "fenced: the sink holds") {
		if time.Now().After(deadline) {
			t.Fatalf("the thawed process's commit was not refused:\n%s", zombie.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.kafka != nil && !strings.Contains(zombie.logText(), "the group moved on from generation") {
		t.Fatalf("the thawed process's round was not refused for its stale group membership:\n%s", zombie.logText())
	}
	s.write(1000)
	s.awaitAll()
	zombie.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
	s.checkExactlyOnce()
}
