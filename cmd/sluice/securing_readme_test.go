package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeScriptTimeout bounds the whole README walk-through: certificates,
// a broker, users, ACLs, a daemon and a pipeline's first records take a
// few seconds; a minute is ample even on a loaded machine.
const readmeScriptTimeout = 2 * time.Minute

// TestReadmeSecuringIt runs the commands of the README's "Securing it"
// section as pasted into bash, in an empty directory where ./sluice is
// this binary, so the documented setup cannot rot. Only the fixed ports
// are changed, to free ones, since other tests run beside it.
func TestReadmeSecuringIt(t *testing.T) {
	for _, tool := range []string{"bash", "openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the README's Securing it commands need it", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := shBlocks(readmeSection(t, string(readme), "## Securing it"))
	if len(blocks) == 0 {
		t.Fatal("the README's Securing it section has no sh blocks")
	}
	script := strings.Join(blocks, "")
	for _, port := range []string{"127.0.0.1:9094", "127.0.0.1:8080"} {
		if !strings.Contains(script, port) {
			t.Fatalf("the Securing it commands no longer use %s; update this test's port substitution", port)
		}
		script = strings.ReplaceAll(script, port, freeAddr(t))
	}

	dir := t.TempDir()
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	shim := "#!/bin/sh\nSLUICE_TEST_MAIN=1 exec '" + self + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "sluice"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	// Stop on the first failing command, and stop what the commands
	// started in the background (the broker, the daemon) at the end.
	prelude := "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n"
	ctx, cancel := context.WithTimeout(context.Background(), readmeScriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", prelude+script)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's Securing it commands failed: %v\n%s", err, out)
	}
	for _, want := range readmeSecuringItOutputs {
		if !strings.Contains(string(out), want) {
			t.Errorf("the README's Securing it commands did not print %q; they printed:\n%s", want, out)
		}
	}
}

// readmeSecuringItOutputs are what the README says the commands print.
var readmeSecuringItOutputs = []string{
	"created topic clicks",
	"user clicks: added SCRAM-SHA-512 credential (8192 iterations)",
	"TOPIC_AUTHORIZATION_FAILED",
	"refused\n",
	"one\nthree\ntwo\n",
	"401\n",
	"202\n",
}
