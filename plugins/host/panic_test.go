package host

import (
	"context"
	"strings"
	"testing"
)

// A record that makes a plugin's Map panic is rejected with the panic as
// its reason, through a real plugin process that keeps running: no
// restart, no batch failure, the other records go through.
func TestPanicInPluginRejectsOnlyThatRecord(t *testing.T) {
	tr := newTransform(t, Config{Plugin: testPluginPath(t), Name: "step"})
	pids := tr.PIDs()
	out, rej, err := tr.Process(context.Background(), records("a", "panic", "b"))
	if err != nil {
		t.Fatalf("a panic on one record failed the batch: %v", err)
	}
	if got := values(out); got != "a!,b!" {
		t.Errorf("out %q, want a!,b!", got)
	}
	if len(rej) != 1 || string(rej[0].Record.Value) != "panic" || rej[0].Plugin != "step" ||
		!strings.HasPrefix(rej[0].Reason, "panic: runtime error: index out of range [5] with length 0 (at main_test.go:") {
		t.Fatalf("rejected %+v, want the panicking record with the panic as its reason", rej)
	}
	if now := tr.PIDs(); now[0] != pids[0] {
		t.Errorf("the plugin process was restarted (pid %d, then %d)", pids[0], now[0])
	}
}
