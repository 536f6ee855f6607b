package builtinbroker

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
)

func TestStart(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, addr, err := Start(t.TempDir(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial the address Start returned: %v", err)
	}
	c.Close()

	// A second broker on the same address says what to do.
	_, _, err = Start(t.TempDir(), addr, log)
	if err == nil || !strings.Contains(err.Error(), "--broker-listen "+addr) || !strings.Contains(err.Error(), "another broker") {
		t.Fatalf("second broker on %s: err = %v, want --broker-listen and a hint", addr, err)
	}
}
