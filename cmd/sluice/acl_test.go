package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sluice acl create, list and delete against `sluice broker --authorizer
// acl`, whose ACLs outlive a restart. The tool's client is the super user
// (it does not authenticate, so it is User:ANONYMOUS).
func TestACLTool(t *testing.T) {
	data := t.TempDir()
	broker := []string{"--authorizer", "acl", "--super-users", "User:ANONYMOUS;User:ops"}
	addr, stop := startBroker(t, data, broker...)
	run := func(args ...string) string {
		t.Helper()
		out, err := runTool(t, addr, "", append([]string{"acl"}, args...)...)
		if err != nil {
			t.Fatalf("sluice acl %v: %v\n%s", args, err, out)
		}
		return out
	}
	out := run("create", "--allow-principal", "User:alice", "--operation", "Read", "--operation", "Describe", "--topic", "orders")
	if strings.Count(out, "created User:alice * ALLOW") != 2 || !strings.Contains(out, "TOPIC:LITERAL:orders") {
		t.Fatalf("create:\n%s", out)
	}
	run("create", "--allow-principal", "User:bob", "--allow-host", "10.0.0.1", "--operation", "write", "--topic", "logs-",
		"--resource-pattern-type", "prefixed")
	run("create", "--deny-principal", "User:*", "--operation", "All", "--group", "secret")
	run("create", "--allow-principal", "User:alice", "--operation", "Read", "--group", "pipeline", "--transactional-id", "tx")

	lines := func(out string) []string { return strings.Split(strings.TrimSpace(out), "\n")[1:] } // after the header
	if got := lines(run("list")); len(got) != 6 {
		t.Fatalf("list: %d ACLs, want 6:\n%s", len(got), strings.Join(got, "\n"))
	}
	// MATCH: every ACL that applies to topic logs-app.
	if got := run("list", "--topic", "logs-app", "--resource-pattern-type", "match"); !strings.Contains(got, "User:bob") ||
		strings.Contains(got, "User:alice") {
		t.Fatalf("list --topic logs-app --resource-pattern-type match:\n%s", got)
	}
	if got := lines(run("list", "--principal", "User:alice")); len(got) != 4 {
		t.Fatalf("list --principal User:alice:\n%s", strings.Join(got, "\n"))
	}
	if got := lines(run("list", "--deny-principal", "User:*")); len(got) != 1 || !strings.Contains(got[0], "GROUP:LITERAL:secret") {
		t.Fatalf("list --deny-principal User:*:\n%s", strings.Join(got, "\n"))
	}
	if out := run("delete", "--topic", "orders", "--allow-principal", "User:alice", "--operation", "Read"); strings.Count(out, "deleted") != 1 {
		t.Fatalf("delete:\n%s", out)
	}
	if out := run("delete", "--topic", "nothing"); !strings.Contains(out, "no ACL matched") {
		t.Fatalf("delete of nothing:\n%s", out)
	}

	// The tool refuses what kafka-acls.sh refuses, before connecting.
	for _, args := range [][]string{
		{"create", "--operation", "Read", "--topic", "t"},                                   // no principal
		{"create", "--allow-principal", "alice", "--operation", "Read", "--topic", "t"},     // no type
		{"create", "--allow-principal", "User:alice", "--operation", "Read"},                // no resource
		{"create", "--allow-principal", "User:alice", "--operation", "Fly", "--topic", "t"}, // no such operation
		{"create", "--allow-principal", "User:a", "--operation", "Read", "--topic", "t", "--resource-pattern-type", "match"},
		{"delete", "--allow-principal", "User:alice"}, // no resource
	} {
		if out, err := runTool(t, addr, "", append([]string{"acl"}, args...)...); err == nil {
			t.Errorf("sluice acl %v succeeded:\n%s", args, out)
		}
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	addr, _ = startBroker(t, data, broker...)
	if got := lines(run("list")); len(got) != 5 {
		t.Fatalf("after a restart, list: %d ACLs, want 5:\n%s", len(got), strings.Join(got, "\n"))
	}

	// A broker without an authorizer says how to get one.
	plain, _ := startBroker(t, t.TempDir())
	_, err := runTool(t, plain, "", "acl", "list")
	if err == nil || !strings.Contains(err.Error(), "--authorizer acl") {
		t.Fatalf("sluice acl list against a broker without an authorizer: %v", err)
	}
}

// TestACLToolSCRAM is the README's setup: a broker that serves only SASL,
// with ACLs and a super user; the super user grants a pipeline's user its
// topics, group and transactional ids with sluice acl, and the console
// tools, logged in as each user, are served or refused accordingly.
func TestACLToolSCRAM(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(users, []byte("- name: admin\n  password: admin-secret\n- name: pipeline\n  password: pipeline-secret\n- name: other\n  password: other-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _ := startBroker(t, filepath.Join(dir, "data"), "--listen", "off", "--sasl-listen", "127.0.0.1:0", "--sasl-users", users,
		"--authorizer", "acl", "--super-users", "User:admin")
	as := func(user, stdin string, args ...string) (string, error) {
		t.Helper()
		return runToolEnv(t, []string{"SLUICE_BOOTSTRAP=" + addr, "SLUICE_SASL_MECHANISM=SCRAM-SHA-256", "SLUICE_SASL_USER=" + user,
			"SLUICE_SASL_PASSWORD=" + user + "-secret"}, stdin, args...)
	}
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	must(as("admin", "", "topic", "create", "clicks"))
	must(as("admin", "", "topic", "create", "out"))
	// The README's ACLs for a pipeline named pipeline-1 reading clicks
	// and writing out exactly once.
	must(as("admin", "", "acl", "create", "--allow-principal", "User:pipeline", "--operation", "Read", "--topic", "clicks", "--group", "pipeline-1"))
	must(as("admin", "", "acl", "create", "--allow-principal", "User:pipeline", "--operation", "Write", "--topic", "out"))
	must(as("admin", "", "acl", "create", "--allow-principal", "User:pipeline", "--operation", "Read", "--operation", "Write",
		"--operation", "Create", "--topic", "_sluice-checkpoint.pipeline-1"))
	must(as("admin", "", "acl", "create", "--allow-principal", "User:pipeline", "--operation", "Write",
		"--transactional-id", "sluice.pipeline-1", "--resource-pattern-type", "prefixed"))
	if out := must(as("admin", "", "acl", "list", "--principal", "User:pipeline")); strings.Count(out, "User:pipeline") != 7 {
		t.Fatalf("acl list --principal User:pipeline:\n%s", out)
	}
	must(as("admin", "c1\nc2\n", "produce", "--topic", "clicks"))

	if out := must(as("pipeline", "", "consume", "--topic", "clicks", "--group", "pipeline-1", "--from-beginning", "--max-messages", "2")); out != "c1\nc2\n" {
		t.Fatalf("pipeline consumes clicks:\n%s", out)
	}
	must(as("pipeline", "o1\n", "produce", "--topic", "out"))
	if out, err := as("other", "x\n", "produce", "--topic", "out"); err == nil || !strings.Contains(err.Error(), "TOPIC_AUTHORIZATION_FAILED") {
		t.Fatalf("other produces to out: %v\n%s", err, out)
	}
	if out, err := as("pipeline", "", "acl", "list"); err == nil || !strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") {
		t.Fatalf("pipeline lists ACLs: %v\n%s", err, out)
	}
	if out, err := as("other", "", "user", "list"); err == nil || !strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") {
		t.Fatalf("other lists users: %v\n%s", err, out)
	}

	// The pipeline itself, as the pipeline user: a kafka source in its
	// group and the exactly-once kafka sink (transactions, checkpoint
	// topic) need nothing more than those ACLs.
	spec := filepath.Join(dir, "p.yaml")
	sasl := "sasl: {mechanism: scram-sha-256, username: pipeline, password: pipeline-secret}"
	if err := os.WriteFile(spec, []byte(`version: 1
name: pipeline-1
source:
  kafka: {brokers: [`+addr+`], topics: [clicks], `+sasl+`}
sink:
  kafka: {brokers: [`+addr+`], topic: out, `+sasl+`}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := sluice(t, "run", spec, "--data", filepath.Join(dir, "run"), "--idle-exit", "1s")
	var runOut strings.Builder
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	kill := time.AfterFunc(time.Minute, func() { run.Process.Kill() }) // a refused pipeline retries forever
	defer kill.Stop()
	if err := run.Wait(); err != nil {
		t.Fatalf("sluice run as the pipeline user: %v\n%s", err, runOut.String())
	}
	if out := must(as("admin", "", "consume", "--topic", "out", "--from-beginning", "--max-messages", "3")); out != "o1\nc1\nc2\n" {
		t.Fatalf("out holds:\n%s", out)
	}
}
