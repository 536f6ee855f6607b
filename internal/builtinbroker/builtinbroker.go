// Package builtinbroker starts the embedded broker that pipelines whose
// brokers are [builtin] read from and write to. `sluice run` starts it on
// first use, `sluice daemon` when it starts; both go through Start so the
// data layout, listener and messages are the same.
package builtinbroker

import (
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/broker"
)

// Start opens the broker in dir and listens on listen (given as
// --broker-listen by both commands). It returns the open broker, which the
// caller closes, and the address it listens on.
func Start(dir, listen string, log *slog.Logger) (*broker.Broker, string, error) {
	b, err := broker.Open(dir, broker.Options{Logger: log})
	if err != nil {
		return nil, "", err
	}
	l, err := b.Listen(listen, nil)
	if err != nil {
		b.Close()
		return nil, "", fmt.Errorf("--broker-listen %s: %w (is another broker running there? then give --broker-listen another address, or list that broker's address under brokers instead of builtin)", listen, err)
	}
	addr := l.Addr().String()
	log.Info("built-in broker listening", "addr", addr, "data", dir)
	return b, addr, nil
}
