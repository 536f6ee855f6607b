package main

import (
	"strings"
	"testing"
)

// TestAlterAndDeleteConsoleTools: topic alter, topic delete-records and
// group delete-offsets against a sluice broker process, each printing one
// line on success and one line saying what to change on failure; the
// deleted records stay deleted across a broker restart.
func TestAlterAndDeleteConsoleTools(t *testing.T) {
	data := t.TempDir()
	addr, stop := startBroker(t, data)
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := runTool(t, addr, stdin, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	fail := func(want string, args ...string) {
		t.Helper()
		out, err := runTool(t, addr, "", args...)
		if err == nil {
			t.Fatalf("%v succeeded: %q", args, out)
		}
		msg := err.(*toolError).stderr
		if !strings.Contains(msg, want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Fatalf("%v: %q, want one line containing %q", args, msg, want)
		}
	}
	run("", "topic", "create", "t", "--partitions", "1")
	run("a\nb\nc\nd\ne\n", "produce", "--topic", "t")

	if out := run("", "topic", "alter", "t", "--partitions", "3", "--config", "retention.ms=60000", "--delete-config", "segment.ms"); out !=
		"altered topic t: partitions now 3, set retention.ms=60000, segment.ms reset to its default\n" {
		t.Fatalf("topic alter: %q", out)
	}
	if out := run("", "topic", "describe", "t"); !strings.Contains(out, "3 partitions") {
		t.Fatalf("describe after alter: %q", out)
	}
	fail("partitions cannot be removed", "topic", "alter", "t", "--partitions", "2")
	fail("nothing to alter", "topic", "alter", "t")
	fail("retention.ms", "topic", "alter", "t", "--config", "retention.ms=soon")

	if out := run("", "topic", "delete-records", "t", "--partition", "0", "--before", "2"); out !=
		"deleted records of t partition 0 before offset 2: log start now 2 (was 0)\n" {
		t.Fatalf("delete-records: %q", out)
	}
	fail("give at most 5, or --before end", "topic", "delete-records", "t", "--partition", "0", "--before", "9")
	fail("has no partition 7", "topic", "delete-records", "t", "--partition", "0", "--partition", "7", "--before", "1")
	fail("give --before", "topic", "delete-records", "t", "--partition", "0")
	if out := run("", "consume", "--topic", "t", "--partition", "0", "--offset", "0", "--max-messages", "1"); out != "c\n" {
		t.Fatalf("consume from offset 0 after deleting before 2: %q, want the first record left, c", out)
	}

	run("", "consume", "--topic", "t", "--group", "readers", "--from-beginning", "--max-messages", "3")
	if out := run("", "group", "delete-offsets", "readers", "--topic", "t", "--partition", "0"); out !=
		"deleted committed offsets of group readers for t partitions 0\n" {
		t.Fatalf("delete-offsets: %q", out)
	}
	// Only partition 0 had records, so the group had no other offsets: an
	// empty group left without offsets is removed, as Kafka removes it.
	if out := run("", "group", "list"); strings.Contains(out, "readers") {
		t.Fatalf("group readers still listed after its only offset was deleted: %q", out)
	}
	fail("group nobody does not exist", "group", "delete-offsets", "nobody", "--topic", "t")
	fail("give --topic", "group", "delete-offsets", "readers")

	if err := stop(); err != nil {
		t.Fatalf("broker stop: %v", err)
	}
	addr, _ = startBroker(t, data)
	if out := run("", "topic", "describe", "t"); !strings.Contains(out, "0          0       [0]       2         5") {
		t.Fatalf("after restart the log start of partition 0 is not 2: %q", out)
	}
	if out := run("", "topic", "delete-records", "t", "--partition", "0", "--before", "end"); out !=
		"deleted records of t partition 0 before offset 5: log start now 5 (was 2)\n" {
		t.Fatalf("delete-records --before end: %q", out)
	}
}
