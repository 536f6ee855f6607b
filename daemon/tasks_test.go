package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
)

func TestTaskInfosLag(t *testing.T) {
	tp := func(topic string, p int32) engine.TopicPartition {
		return engine.TopicPartition{Topic: topic, Partition: p}
	}
	st := engine.Status{
		Tasks: map[engine.Task]engine.Checkpoint{
			0: {Epoch: 7, At: engine.Positions{tp("a", 0): 10, tp("b", 0): 4}},
			1: {Epoch: 3, At: engine.Positions{tp("a", 1): 5}}, // b/1 not committed yet
			2: {Epoch: 2, At: engine.Positions{tp("a", 2): 9}}, // no end known
			3: {Epoch: 1, At: engine.Positions{tp("a", 3): 8}}, // the end listed before the commit
		},
		Ends: engine.Positions{tp("a", 0): 15, tp("b", 0): 4, tp("a", 1): 9, tp("b", 1): 2, tp("a", 3): 6},
	}
	var got []string
	for _, ti := range taskInfos(st) {
		lag := "none"
		if ti.Lag != nil {
			lag = strconv.FormatInt(*ti.Lag, 10)
		}
		got = append(got, fmt.Sprintf("%d:%d:%s", ti.Task, ti.Epoch, lag))
	}
	if want := "0:7:5 1:3:none 2:2:none 3:1:0"; strings.Join(got, " ") != want {
		t.Fatalf("tasks %q, want %q", strings.Join(got, " "), want)
	}
	if taskInfos(engine.Status{}) != nil {
		t.Fatal("a pipeline not split into tasks lists tasks")
	}
	if ti := taskInfos(engine.Status{Tasks: map[engine.Task]engine.Checkpoint{}}); ti == nil || len(ti) != 0 {
		t.Fatalf("a pipeline split into tasks that runs none lists %v, want an empty list", ti)
	}
}

// TestTasksFieldOnlyWhenSplit: the tasks field is absent for a pipeline
// not split into tasks, and an empty list for one that runs none, so
// existing clients see the response they always did.
func TestTasksFieldOnlyWhenSplit(t *testing.T) {
	for _, c := range []struct {
		in   Info
		want string
	}{
		{Info{Name: "p"}, ""},
		{Info{Name: "p", Tasks: []TaskInfo{}}, `"tasks":[]`},
	} {
		b, err := json.Marshal(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(b), `"tasks"`); has != (c.want != "") || !strings.Contains(string(b), c.want) {
			t.Fatalf("%s: want tasks field %q", b, c.want)
		}
	}
}

// TestDaemonListsTasks runs a direct-mode Kafka pipeline into postgres,
// split into tasks, on the daemon's broker: GET /pipelines/{name} lists
// every task with its epoch, positions and lag, and /metrics has each
// task's committed epoch.
func TestDaemonListsTasks(t *testing.T) {
	dsn := os.Getenv("SLUICE_TEST_PG_DSN")
	if dsn == "" {
		t.Skip(`SLUICE_TEST_PG_DSN is not set: run eval "$(.ci/postgres.sh)" first`)
	}
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	rand.Read(b[:])
	schema := "daemon_" + hex.EncodeToString(b[:])
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		db.Close(context.Background())
	})

	const partitions, records = 4, 400
	td := startDaemon(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(td.d.BrokerAddr()), kgo.DefaultProduceTopic("ev"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, "ev"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	td.write("split.yaml", fmt.Sprintf(`version: 1
name: split
source:
  kafka: {brokers: [builtin], topics: [ev], session-timeout: 6s}
batch: {interval: 20ms, max-records-per-partition: 50}
sink:
  postgres: {dsn: %q, table: %s.out, create-table: true, columns: {v: value}}
`, dsn, schema))

	// caughtUp reports whether every task's positions sum to n, with a
	// lag of 0.
	caughtUp := func(in Info, n int64) bool {
		if len(in.Tasks) != partitions {
			return false
		}
		var sum int64
		for _, ti := range in.Tasks {
			if ti.Lag == nil || *ti.Lag != 0 {
				return false
			}
			for _, off := range ti.Positions {
				sum += off
			}
		}
		return sum == n
	}
	var in Info
	td.waitFor("every task caught up", func() bool { in = td.info("split"); return caughtUp(in, records) })
	for i, ti := range in.Tasks {
		if ti.Task != engine.Task(i) || ti.Epoch == 0 || len(ti.Positions) != 1 || ti.Positions[engine.TopicPartition{Topic: "ev", Partition: int32(i)}] == 0 {
			t.Fatalf("task %d: %+v", i, ti)
		}
	}

	resp, err := http.Get(td.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, ti := range in.Tasks {
		series := fmt.Sprintf(`sluice_task_committed_epoch{pipeline="split",task="%d"}`, ti.Task)
		if !strings.Contains(string(body), series) {
			t.Fatalf("/metrics has no %s", series)
		}
	}

	// A record more: a task's position moves and its lag comes back to 0.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("late")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	td.waitFor("the record more committed", func() bool { return caughtUp(td.info("split"), records+1) })
}
