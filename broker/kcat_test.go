package broker

import (
	"os/exec"
	"strings"
	"testing"
)

// TestKcat runs librdkafka, through the kcat tool, against the broker: a
// third client implementation with its own version negotiation and
// stricter parsing. Skipped where kcat is not installed (apt install kcat).
func TestKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	_, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "rd", 2)
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctxT(t), kcat, append([]string{"-b", addr, "-t", "rd"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("a:1\nb:2\nc:3\n", "-P", "-K", ":", "-X", "acks=all")
	run("d\n", "-P", "-X", "acks=0")
	out := run("", "-C", "-e", "-q", "-f", "%k=%s\n")
	for _, want := range []string{"a=1\n", "b=2\n", "c=3\n", "=d\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("kcat consumed %q, missing %q", out, want)
		}
	}
	if strings.Contains(out, "ERROR") || strings.Contains(out, "PROTOERR") {
		t.Fatalf("librdkafka reported protocol errors:\n%s", out)
	}
	if md := run("", "-L"); !strings.Contains(md, `topic "rd" with 2 partitions`) {
		t.Fatalf("kcat metadata:\n%s", md)
	}
}
