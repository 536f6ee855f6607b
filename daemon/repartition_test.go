package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestDaemonRunsRepartitionStages runs a pipeline cut by a repartition
// step on the daemon's broker: GET /pipelines/{name} shows the stage after
// the cut with its tasks and records, every record reaches the file sink
// once, and DELETE /pipelines/{name} deletes the internal topics.
func TestDaemonRunsRepartitionStages(t *testing.T) {
	const partitions, records = 2, 300
	td := startDaemon(t)
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(td.d.BrokerAddr()), kgo.DefaultProduceTopic("ev"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, "ev"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"user":"u%d","i":%d}`, i%7, i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(td.out, "rk")
	td.write("rk.yaml", fmt.Sprintf(`version: 1
name: rk
source:
  kafka: {brokers: [builtin], topics: [ev], session-timeout: 6s}
batch: {interval: 20ms, max-records-per-partition: 50}
transforms:
  - repartition: {key: user}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, out))

	td.waitFor("every record in the output", func() bool { return len(filetest.Lines(t, out)) >= records })
	seen := map[string]bool{}
	for _, l := range filetest.Lines(t, out) {
		if seen[l] {
			t.Fatalf("%s written twice", l)
		}
		seen[l] = true
	}
	var in Info
	td.waitFor("the stage's counts", func() bool {
		in = td.info("rk")
		return len(in.Stages) == 1 && in.Stages[0].RecordsOut == records && in.RecordsIn == records
	})
	if st := in.Stages[0]; st.Name != "rk.repartition-1" || len(st.Tasks) != partitions {
		t.Fatalf("stage %+v, want rk.repartition-1 running %d tasks", st, partitions)
	}

	internal := func() []string {
		listed, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(listed.Names(), func(n string) bool { return !strings.HasPrefix(n, "_sluice-repartition.rk.") })
	}
	if got := internal(); len(got) != 2 {
		t.Fatalf("internal topics %v, want the repartition topic and its checkpoints", got)
	}
	code, body, err := td.do("DELETE", "/pipelines/rk", "", map[string]string{"Authorization": "Bearer " + td.token})
	if err != nil || code != 200 {
		t.Fatalf("DELETE /pipelines/rk: %d %s %v", code, body, err)
	}
	td.waitFor("the internal topics deleted", func() bool { return len(internal()) == 0 })
}
