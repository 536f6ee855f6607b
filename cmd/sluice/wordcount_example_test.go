package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// wordcountVocabulary is how many distinct words the test's lines use:
// enough that every task of the count has words, few enough that each
// word is counted many times.
const wordcountVocabulary = 150

// wordcountMaxLines bounds what the test's producer writes while the
// processes are killed (about 6.5 words a line), so the run stays short.
const wordcountMaxLines = 40_000

// stageTasks finds what a stage of a pipeline runs: the last "running
// tasks" line the engine logged for it.
func stageTasks(r *runner, stage string) []string {
	re := regexp.MustCompile(`msg="running tasks" pipeline=` + regexp.QuoteMeta(stage) + ` tasks="?\[([0-9 ]*)\]`)
	m := re.FindAllStringSubmatch(r.logText(), -1)
	if m == nil {
		return nil
	}
	return strings.Fields(m[len(m)-1][1])
}

// TestWordCountExactThroughCrashes runs examples/wordcount.yaml (Kafka ->
// split -> repartition by word -> aggregate -> postgres upsert) in two
// `sluice run` processes on one broker: three SIGKILLs (each process
// restarted), and tasks of the counting stage moving from one process to
// the other (with their state, restored from its changelog), while lines
// keep coming. The final table equals a straight count of the words
// produced.
func TestWordCountExactThroughCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two pipelines through kills for a while")
	}
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
	schema := "wc_" + hex.EncodeToString(b[:])
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		db.Close(context.Background())
	})

	dir := t.TempDir()
	addr := freeAddr(t)
	broker := sluice(t, "broker", "--data", filepath.Join(dir, "broker"), "--listen", addr)
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	waitForBroker(t, addr)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the sink holds, for the failure's story.
		rows, err := db.Query(context.Background(), "SELECT pipeline, task, epoch, positions::text FROM "+schema+".sluice_task_checkpoints ORDER BY 1, 2")
		if err != nil {
			t.Logf("task checkpoints: %v", err)
			return
		}
		for rows.Next() {
			var p, at string
			var task int32
			var epoch int64
			rows.Scan(&p, &task, &epoch, &at)
			t.Logf("task checkpoint %s/%d: epoch %d at %s", p, task, epoch, at)
		}
		rows.Close()
		acl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			return
		}
		defer acl.Close()
		adm := kadm.NewClient(acl)
		starts, _ := adm.ListStartOffsets(context.Background(), "_sluice-repartition.wordcount.1")
		ends, _ := adm.ListEndOffsets(context.Background(), "_sluice-repartition.wordcount.1")
		starts.Each(func(o kadm.ListedOffset) { t.Logf("internal topic partition %d: start %d", o.Partition, o.Offset) })
		ends.Each(func(o kadm.ListedOffset) { t.Logf("internal topic partition %d: end %d", o.Partition, o.Offset) })
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("lines"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	createTopic(t, cl, "lines", 4)

	// Lines are keyed by their number, so a word's records start out in
	// every partition: only the repartition brings them together.
	rng := mrand.New(mrand.NewPCG(16, 5))
	want := map[string]int64{}
	var words, lines int64
	produce := func(n int) {
		var recs []*kgo.Record
		for range n {
			var line []string
			for range 1 + rng.IntN(12) {
				w := fmt.Sprintf("w%03d", rng.IntN(wordcountVocabulary))
				line = append(line, w)
				want[w]++
				words++
			}
			recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "line-%d", lines), Value: []byte(strings.Join(line, " "))})
			lines++
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Error(err) // Fatal only on the test's goroutine
		}
	}
	counted := func() (map[string]int64, int64) {
		t.Helper()
		rows, err := db.Query(ctx, "SELECT word, count FROM "+schema+".word_counts")
		if err != nil {
			return nil, 0 // not created yet
		}
		got, sum := map[string]int64{}, int64(0)
		for rows.Next() {
			var w string
			var n int64
			if err := rows.Scan(&w, &n); err != nil {
				t.Fatal(err)
			}
			got[w], sum = n, sum+n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return got, sum
	}
	// awaitCounted waits until the table counts more than min words.
	awaitCounted := func(min int64) int64 {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if _, sum := counted(); sum > min {
				return sum
			}
			if time.Now().After(deadline) {
				t.Fatalf("the table counts no more than %d words after 2m", min)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	example, err := filepath.Abs("../../examples/wordcount.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"KAFKA_BROKERS=" + addr, "PG_DSN=" + dsn, "WORDCOUNT_TABLE=" + schema + ".word_counts"}
	start := func(name string) *runner {
		return startRunner(t, name, env, example, "--data", filepath.Join(dir, "data-"+name))
	}
	const stage = "wordcount.repartition-1"

	produce(3000)
	// Lines keep coming while processes are killed and join, so each kill
	// lands among batches in flight; the producer owns want until it stops.
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for lines < wordcountMaxLines {
			select {
			case <-stop:
				return
			default:
			}
			produce(100)
		}
	}()
	a := start("a")
	seen := awaitCounted(0)
	a.stop(t, syscall.SIGKILL) // 1
	a = start("a")

	// A second process: the group moves tasks of both stages to it, and
	// their counts with them.
	bProc := start("b")
	deadline := time.Now().Add(90 * time.Second)
	for len(stageTasks(bProc, stage)) == 0 || len(stageTasks(a, stage))+len(stageTasks(bProc, stage)) != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the counting stage's tasks never split: a runs %v, b %v", stageTasks(a, stage), stageTasks(bProc, stage))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("tasks of %s: a %v, b %v", stage, stageTasks(a, stage), stageTasks(bProc, stage))
	seen = awaitCounted(seen)
	bProc.stop(t, syscall.SIGKILL) // 2
	bProc = start("b")
	seen = awaitCounted(seen)
	a.stop(t, syscall.SIGKILL) // 3
	a = start("a")
	close(stop)
	<-stopped
	produce(1000)

	deadline = time.Now().Add(3 * time.Minute)
	for {
		got, sum := counted()
		if sum > words {
			t.Fatalf("the table counts %d words, more than the %d produced", sum, words)
		}
		if sum == words {
			for w, n := range want {
				if got[w] != n {
					t.Fatalf("%s counted %d times, produced %d times", w, got[w], n)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d words in the table, %d produced", len(got), len(want))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3m the table counts %d of %d words", sum, words)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d lines, %d words over %d distinct, three kills: every count exact", lines, words, len(want))
	a.stop(t, syscall.SIGTERM)
	bProc.stop(t, syscall.SIGTERM)
}
