package shm

import (
	"errors"
	"runtime"
	"testing"
)

func TestCreateOpenShare(t *testing.T) {
	host, f, err := Create(2, 4096)
	if runtime.GOOS != "linux" {
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Create = %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close(); f.Close() })
	plugin, err := Open(f, 2, 4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plugin.Close() })

	req := append(host.Request(1), "batch"...)
	if got := string(plugin.Request(1)[:len(req)]); got != "batch" {
		t.Fatalf("plugin sees %q in slot 1", got)
	}
	_ = append(plugin.Response(1), "answer"...)
	if got := string(host.Response(1)[:6]); got != "answer" {
		t.Fatalf("host sees %q", got)
	}
	// Areas do not overlap and cannot be grown into each other.
	if cap(host.Request(0)) != 4096 || string(host.Request(0)[:5]) == "batch" {
		t.Fatal("slots overlap")
	}
	tests := []struct {
		slot int
		n    uint64
		want bool
	}{{0, 0, true}, {1, 4096, true}, {1, 4097, false}, {2, 1, false}, {-1, 1, false}}
	for _, tt := range tests {
		if got := host.Valid(tt.slot, tt.n); got != tt.want {
			t.Errorf("Valid(%d, %d) = %v", tt.slot, tt.n, got)
		}
	}
	if _, err := Open(f, 4, 4096); err == nil {
		t.Error("Open accepted a layout larger than the file")
	}
}
