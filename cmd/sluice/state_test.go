package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestStateInspectAndDelete: a word count runs against a sluice broker;
// sluice state inspect prints a task's counts from the local store and,
// with --bootstrap, the same from the changelog topic; sluice state
// delete removes both.
func TestStateInspectAndDelete(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	if out, err := runTool(t, addr, "", "topic", "create", "words", "--partitions", "2"); err != nil {
		t.Fatalf("topic create: %v %s", err, out)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 30 {
		r := &kgo.Record{Topic: "words", Partition: int32(i % 2), Key: fmt.Appendf(nil, "word%d", i%3), Value: []byte("{}")}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	file := filepath.Join(dir, "wc.yaml")
	os.WriteFile(file, fmt.Appendf(nil, `version: 1
name: wc
source: {kafka: {brokers: [%s], topics: [words]}}
transforms:
  - aggregate: {key: key, functions: {n: count}}
sink: {file: {path: %s, format: raw}}
`, addr, filepath.Join(dir, "out")), 0o644)
	if out, err := runTool(t, addr, "", "run", file, "--data", data, "--idle-exit", "500ms"); err != nil {
		t.Fatalf("run: %v %s", err, out)
	}

	local, err := runTool(t, addr, "", "state", "inspect", "wc", "--task", "0", "--data", data)
	if err != nil {
		t.Fatalf("inspect the local store: %v", err)
	}
	// Partition 0 holds records 0, 2, 4, ...: every word, 5 times each.
	for _, w := range []string{"word0", "word1", "word2"} {
		if !strings.Contains(local, w) {
			t.Fatalf("inspect does not show %s:\n%s", w, local)
		}
	}
	if !strings.HasPrefix(local, "NAMESPACE") || !strings.Contains(local, "task 0 of wc: ") {
		t.Fatalf("inspect output:\n%s", local)
	}
	remote, err := runTool(t, addr, "", "state", "inspect", "wc", "--task", "0", "--bootstrap", addr, "--data", filepath.Join(dir, "elsewhere"))
	if err != nil {
		t.Fatalf("inspect the changelog: %v", err)
	}
	table := func(s string) string { return s[:strings.LastIndex(s, "task 0 of wc")] }
	if table(local) != table(remote) {
		t.Fatalf("the changelog restores other state than the local store holds:\nlocal:\n%s\nchangelog:\n%s", local, remote)
	}

	if out, err := runTool(t, addr, "", "state", "delete", "wc", "--data", data, "--bootstrap", addr); err != nil || !strings.Contains(out, "deleted the state of wc") {
		t.Fatalf("state delete: %v %s", err, out)
	}
	if _, err := runTool(t, addr, "", "state", "inspect", "wc", "--task", "0", "--data", data); err == nil || !strings.Contains(err.Error(), "no local state of task 0") {
		t.Fatalf("inspect after delete: %v", err)
	}
	if out, err := runTool(t, addr, "", "topic", "list"); err != nil || strings.Contains(out, "_sluice-state.wc") {
		t.Fatalf("topic list after delete: %v %s", err, out)
	}
}

// TestStateDeleteRemovesStages: the aggregate after a repartition keeps
// its state under the stage's name (rw.repartition-1); sluice state delete
// rw removes it too, locally and in the changelog topic.
func TestStateDeleteRemovesStages(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	if out, err := runTool(t, addr, "", "topic", "create", "lines", "--partitions", "2"); err != nil {
		t.Fatalf("topic create: %v %s", err, out)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 20 {
		r := &kgo.Record{Topic: "lines", Value: fmt.Appendf(nil, "w%d", i%4)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	file := filepath.Join(dir, "rw.yaml")
	os.WriteFile(file, fmt.Appendf(nil, `version: 1
name: rw
source: {kafka: {brokers: [%s], topics: [lines]}}
delivery: exactly-once
transforms:
  - repartition: {key: value}
  - aggregate: {key: key, functions: {n: count}}
sink: {file: {path: %s, format: raw}}
`, addr, filepath.Join(dir, "out")), 0o644)
	if out, err := runTool(t, addr, "", "run", file, "--data", data, "--idle-exit", "500ms"); err != nil {
		t.Fatalf("run: %v %s", err, out)
	}
	stage := filepath.Join(data, "state", "rw.repartition-1")
	if _, err := os.Stat(stage); err != nil {
		t.Fatalf("the stage's local state: %v", err)
	}
	if out, err := runTool(t, addr, "", "topic", "list"); err != nil || !strings.Contains(out, "_sluice-state.rw.repartition-1") {
		t.Fatalf("the stage's changelog topic before delete: %v %s", err, out)
	}
	if out, err := runTool(t, addr, "", "state", "delete", "rw", "--data", data, "--bootstrap", addr); err != nil || !strings.Contains(out, "rw.repartition-1") {
		t.Fatalf("state delete: %v %s", err, out)
	}
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Fatalf("the stage's local state is still there after delete: %v", err)
	}
	if out, err := runTool(t, addr, "", "topic", "list"); err != nil || strings.Contains(out, "_sluice-state.rw") {
		t.Fatalf("topic list after delete: %v %s", err, out)
	}
}
