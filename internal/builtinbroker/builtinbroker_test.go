package builtinbroker

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/broker"
)

func TestStart(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := Start(t.TempDir(), Plain("127.0.0.1:0"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	addr, err := b.Addr(false, false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial the address Start returned: %v", err)
	}
	c.Close()

	// A second broker on the same address says what to do.
	_, err = Start(t.TempDir(), Plain(addr), log)
	if err == nil || !strings.Contains(err.Error(), "--broker-listen "+addr) || !strings.Contains(err.Error(), "another broker") {
		t.Fatalf("second broker on %s: err = %v, want --broker-listen and a hint", addr, err)
	}
}

// TestAddrPicksTheListener: a client is given the listener of its kind (as
// a Kafka client's security.protocol picks one), a wildcard listener is
// reached over loopback, and a kind that is off names its flag.
func TestAddrPicksTheListener(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := Start(t.TempDir(), Config{}, log); err != ErrOff {
		t.Fatalf("Start without listeners: %v, want ErrOff", err)
	}
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(users, []byte("- name: u\n  password: p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Start(filepath.Join(dir, "broker"), Config{
		Listeners: []broker.ListenerConfig{
			{Addr: "0.0.0.0:0", Security: broker.Plaintext},
			{Addr: "127.0.0.1:0", Security: broker.SASLPlaintext},
		},
		Options: broker.Options{UsersFile: users},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	plain, err := s.Addr(false, false)
	if err != nil || !strings.HasPrefix(plain, "127.0.0.1:") {
		t.Fatalf("plain listener on 0.0.0.0: Addr = %q, %v; want a 127.0.0.1 address", plain, err)
	}
	sasl, err := s.Addr(false, true)
	if err != nil || sasl == plain {
		t.Fatalf("SASL listener: Addr = %q, %v", sasl, err)
	}
	for _, c := range []struct {
		tls, sasl bool
		want      string
	}{
		{true, false, "--broker-tls-listen"},
		{true, true, "--broker-sasl-ssl-listen"},
	} {
		if _, err := s.Addr(c.tls, c.sasl); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Addr(tls %v, sasl %v) with that listener off: %v, want it to name %s", c.tls, c.sasl, err, c.want)
		}
	}
}
