package postgres

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// A server that is not there: pgx's error names each address tried on a
// line of its own; the sink's error is one line, and still retryable.
func TestConnectErrorIsOneLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	host, port, _ := net.SplitHostPort(addr)
	s := &Sink{dsn: "postgres://u@" + host + ":" + port + "/db?connect_timeout=5"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.connect(ctx)
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
	if !engine.IsRetryable(err) {
		t.Errorf("a refused connection is not retryable: %v", err)
	}
}
