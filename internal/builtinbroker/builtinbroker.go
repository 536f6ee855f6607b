// Package builtinbroker starts the embedded broker that pipelines whose
// brokers are [builtin] read from and write to. `sluice run` starts it on
// first use, `sluice daemon` when it starts; both go through Start so the
// data layout, listeners and messages are the same.
package builtinbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/sluicehq/sluice/broker"
)

// Config is the embedded broker's listeners, users and authorizer, as the
// --broker-* flags of `sluice run` and `sluice daemon` give them.
type Config struct {
	// Listeners to open; none means the embedded broker is off, and a
	// pipeline with brokers: [builtin] is refused.
	Listeners []broker.ListenerConfig
	// Options holds the users file and authorizer settings; Start sets
	// its Logger.
	Options broker.Options
}

// Plain is a Config with one PLAINTEXT listener on addr.
func Plain(addr string) Config {
	return Config{Listeners: []broker.ListenerConfig{{Addr: addr, Security: broker.Plaintext}}}
}

// Flag is the flag of `sluice run` and `sluice daemon` that sets a
// listener of the given kind, for messages.
func Flag(s broker.SecurityProtocol) string {
	switch s {
	case broker.SSL:
		return "--broker-tls-listen"
	case broker.SASLPlaintext:
		return "--broker-sasl-listen"
	case broker.SASLSSL:
		return "--broker-sasl-ssl-listen"
	}
	return "--broker-listen"
}

// Server is the running embedded broker and where each of its listeners
// can be reached from this process.
type Server struct {
	*broker.Broker
	addrs map[broker.SecurityProtocol]string
}

// ErrOff is Start's answer when every listener is off.
var ErrOff = errors.New("the embedded broker is off: every --broker-*listen flag is off; give one (e.g. --broker-listen 127.0.0.1:9092), or list host:port addresses under brokers instead of builtin")

// Start opens the broker in dir and its listeners. It returns the running
// broker, which the caller closes, or ErrOff when cfg has no listeners.
func Start(dir string, cfg Config, log *slog.Logger) (*Server, error) {
	if len(cfg.Listeners) == 0 {
		return nil, ErrOff
	}
	opts := cfg.Options
	opts.Logger = log
	b, err := broker.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	s := &Server{Broker: b, addrs: map[broker.SecurityProtocol]string{}}
	for _, lc := range cfg.Listeners {
		if lc.Security == "" {
			lc.Security = broker.Plaintext
		}
		l, err := b.ListenWith(lc)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("%s %s: %w (is another broker running there? then give %s another address, or list that broker's address under brokers instead of builtin)", Flag(lc.Security), lc.Addr, err, Flag(lc.Security))
		}
		addr := dialable(l.Addr())
		s.addrs[lc.Security] = addr
		log.Info("built-in broker listening", "addr", l.Addr().String(), "security", string(lc.Security), "data", dir)
	}
	return s, nil
}

// Addr is the address of the listener a client of this process connects
// to: the one that takes TLS if it uses TLS, SASL if it uses SASL, as a
// Kafka client's security.protocol picks a listener.
func (s *Server) Addr(tls, sasl bool) (string, error) {
	want := broker.Plaintext
	switch {
	case tls && sasl:
		want = broker.SASLSSL
	case tls:
		want = broker.SSL
	case sasl:
		want = broker.SASLPlaintext
	}
	if a, ok := s.addrs[want]; ok {
		return a, nil
	}
	blocks := map[broker.SecurityProtocol]string{
		broker.Plaintext:     "neither tls: nor sasl:",
		broker.SSL:           "tls: and no sasl:",
		broker.SASLPlaintext: "sasl: and no tls:",
		broker.SASLSSL:       "tls: and sasl:",
	}[want]
	return "", fmt.Errorf("a pipeline with %s connects to the embedded broker's %s listener, which is off: give %s ADDR, or change the pipeline's blocks to match a listener that is on", blocks, want, Flag(want))
}

// dialable turns a listener's address into one this process can dial: a
// wildcard host (0.0.0.0, [::]) becomes 127.0.0.1, which Go's dual-stack
// wildcard listeners accept whichever of the two was written.
func dialable(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
}
