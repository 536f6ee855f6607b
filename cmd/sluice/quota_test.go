package main

import (
	"strings"
	"testing"
)

// TestQuotaConsoleTools: quota alter and describe against a sluice broker
// process: one line on success, one line saying what to change on failure,
// and the quotas survive a broker restart. With ACLs on and none granted,
// the refusal names the operation to grant.
func TestQuotaConsoleTools(t *testing.T) {
	data := t.TempDir()
	addr, stop := startBroker(t, data)
	run := func(args ...string) string {
		t.Helper()
		out, err := runTool(t, addr, "", args...)
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
	if out := run("quota", "alter", "--user", "alice", "--add", "producer_byte_rate=1048576,request_percentage=12.5"); out !=
		"altered quotas of {user=alice}: set producer_byte_rate=1048576, set request_percentage=12.5\n" {
		t.Fatalf("alter: %q", out)
	}
	run("quota", "alter", "--user", "alice", "--client-default", "--add", "consumer_byte_rate=2097152")
	run("quota", "alter", "--client-id", "batch", "--add", "producer_byte_rate=4096")
	// Not the default IP: it would apply to the tools' own connections.
	run("quota", "alter", "--ip", "10.0.0.7", "--add", "connection_creation_rate=10")
	if out := run("quota", "alter", "--user", "bob", "--add", "producer_byte_rate=5", "--validate-only"); out !=
		"valid, not applied: quotas of {user=bob}: set producer_byte_rate=5\n" {
		t.Fatalf("validate-only: %q", out)
	}
	fail("INVALID_REQUEST: Invalid configuration key fetch_rate", "quota", "alter", "--client-id", "x", "--add", "fetch_rate=1")
	fail("must be a Long value", "quota", "alter", "--client-id", "x", "--add", "producer_byte_rate=1.5")
	fail("--add producer_byte_rate=fast: the value must be a number", "quota", "alter", "--client-id", "x", "--add", "producer_byte_rate=fast")
	fail("name the entity", "quota", "alter", "--add", "producer_byte_rate=1")
	fail("nothing to change", "quota", "alter", "--user", "alice")
	fail("--user and --user-default name two user entities", "quota", "alter", "--user", "a", "--user-default", "--add", "producer_byte_rate=1")

	want := "USER   CLIENT-ID  IP        QUOTAS\n" +
		"-      -          10.0.0.7  connection_creation_rate=10\n" +
		"-      batch      -         producer_byte_rate=4096\n" +
		"alice  -          -         producer_byte_rate=1048576,request_percentage=12.5\n" +
		"alice  <default>  -         consumer_byte_rate=2097152\n"
	if out := run("quota", "describe"); out != want {
		t.Fatalf("describe:\n%s\nwant\n%s", out, want)
	}
	if out := run("quota", "describe", "--user", "alice", "--strict"); !strings.Contains(out, "alice  -          -   producer_byte_rate=1048576") || strings.Contains(out, "<default>") {
		t.Fatalf("describe --user alice --strict: %q", out)
	}
	if out := run("quota", "alter", "--user", "alice", "--delete", "request_percentage"); out != "altered quotas of {user=alice}: removed request_percentage\n" {
		t.Fatalf("delete: %q", out)
	}

	if err := stop(); err != nil {
		t.Fatalf("broker stop: %v", err)
	}
	addr, _ = startBroker(t, data)
	if out := run("quota", "describe", "--client-id", "batch"); !strings.Contains(out, "batch      -   producer_byte_rate=4096") {
		t.Fatalf("after restart: %q", out)
	}
	if out := run("quota", "describe", "--user", "alice"); !strings.Contains(out, "producer_byte_rate=1048576\n") {
		t.Fatalf("after restart, alice: %q", out)
	}

	addr, _ = startBroker(t, t.TempDir(), "--authorizer", "acl")
	fail("needs AlterConfigs on the cluster (sluice acl create --operation AlterConfigs --cluster)",
		"quota", "alter", "--user", "alice", "--add", "producer_byte_rate=1")
	fail("needs DescribeConfigs on the cluster", "quota", "describe")
}
