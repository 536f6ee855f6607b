package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/group"
	"github.com/sluicehq/sluice/broker/storage"
	"github.com/sluicehq/sluice/internal/builtinbroker"
)

// listenOff switches a listener off. An empty address is refused rather
// than read as off, since it used to mean every interface.
const listenOff = "off"

// listenerFlags are a broker's security settings and resource limits:
// listeners, TLS, SASL users, the authorizer, and the caps on connections,
// requests and partitions. One definition serves `sluice broker` (flags
// as written: --listen, --tls-cert, ...) and the embedded broker of
// `sluice run` and `sluice daemon` (the same flags prefixed broker-:
// --broker-listen, --broker-tls-cert, ...; there --tls-cert would read as
// a client's).
type listenerFlags struct {
	prefix                                string
	plain, tlsListen, sasl, saslSSL       string // addresses, or listenOff
	tlsCert, tlsKey, tlsClientCA, usersFN string
	authorizer, superUsers                string
	allowIfNoACL                          bool
	// lim holds the resource limits (the Max*, *Timeout fields), the cleaner
	// settings and the consumer-group session timeout and heartbeat interval.
	lim broker.Options
}

// The default addresses: loopback only, so a broker is reachable from
// other machines only when an address says so.
const (
	defaultListen    = "127.0.0.1:9092"
	defaultTLSListen = "127.0.0.1:9093"
)

// addListenerFlags defines the listener flags on f, each name prefixed.
func addListenerFlags(f *pflag.FlagSet, prefix string) *listenerFlags {
	l := &listenerFlags{prefix: prefix}
	f.StringVar(&l.plain, prefix+"listen", defaultListen, "PLAINTEXT listener address (no authentication: anyone who connects is User:ANONYMOUS), or off")
	f.StringVar(&l.tlsListen, prefix+"tls-listen", defaultTLSListen, "SSL listener address, or off; opened when --"+prefix+"tls-cert is given")
	f.StringVar(&l.sasl, prefix+"sasl-listen", listenOff, "SASL_PLAINTEXT listener address (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; needs users), or off")
	f.StringVar(&l.saslSSL, prefix+"sasl-ssl-listen", listenOff, "SASL_SSL listener address (needs --"+prefix+"tls-cert, --"+prefix+"tls-key and users), or off")
	f.StringVar(&l.tlsCert, prefix+"tls-cert", "", "PEM certificate file of TLS listeners (SSL, SASL_SSL)")
	f.StringVar(&l.tlsKey, prefix+"tls-key", "", "PEM private key file of --"+prefix+"tls-cert")
	f.StringVar(&l.tlsClientCA, prefix+"tls-client-ca", "", "PEM CA file: TLS listeners require client certificates signed by it (mTLS)")
	f.StringVar(&l.usersFN, prefix+"sasl-users", "", "YAML file of SASL users: a list of {name, password, mechanisms}")
	f.StringVar(&l.authorizer, prefix+"authorizer", "", `"acl" checks every request against the ACLs kept in the data directory (managed with sluice acl or kafka-acls.sh); without it every client may do anything`)
	f.StringVar(&l.superUsers, prefix+"super-users", "", `principals the ACLs do not apply to, separated by ';', e.g. "User:admin;User:ops"`)
	f.BoolVar(&l.allowIfNoACL, prefix+"allow-everyone-if-no-acl-found", false, "with --"+prefix+"authorizer acl, allow what no ACL names a resource for (Kafka's allow.everyone.if.no.acl.found); by default it is denied")
	f.DurationVar(&l.lim.IdleTimeout, prefix+"idle-timeout", broker.DefaultIdleTimeout, "close a connection that sends nothing and waits for nothing this long")
	f.DurationVar(&l.lim.RequestTimeout, prefix+"request-timeout", broker.DefaultRequestTimeout, "close a connection that takes longer than this to send a request it started, or to read a response")
	f.Int64Var(&l.lim.MaxRequestBytes, prefix+"max-request-bytes", broker.DefaultRequestBytes, "bytes of requests in flight across all connections; over it, connections are not read until responses go out")
	f.Int64Var(&l.lim.MaxConnRequestBytes, prefix+"max-connection-request-bytes", broker.DefaultConnRequestBytes, "bytes of requests in flight on one connection (also the largest request accepted)")
	f.IntVar(&l.lim.MaxConnections, prefix+"max-connections", 0, fmt.Sprintf("open connections; more are closed at once (0: %d, or a quarter of the open-file limit if lower)", broker.DefaultMaxConnections))
	f.IntVar(&l.lim.MaxConnectionsPerIP, prefix+"max-connections-per-ip", 0, "open connections from one client address (0: no per-address cap)")
	f.IntVar(&l.lim.MaxPartitions, prefix+"max-partitions", 0, "partitions of all topics together (0: what the open-file limit allows after connections)")
	f.Int64Var(&l.lim.CleanerBufferBytes, prefix+"log-cleaner-dedupe-buffer-size", storage.DefaultCleanerBufferBytes,
		"most memory of the log cleaner's offset maps (key hash to latest offset) for compacted topics, allocated as a clean needs; a log with more distinct keys than fit (24 bytes each, 90% full) is cleaned in more passes")
	f.Float64Var(&l.lim.CleanerIOBytesPerSecond, prefix+"log-cleaner-io-max-bytes-per-second", 0, "bound on the log cleaner's reads plus writes, in bytes per second (0: none)")
	f.IntVar(&l.lim.CleanerThreads, prefix+"log-cleaner-threads", 1, "compacted partitions cleaned at once; the dedupe buffer is split among them")
	f.DurationVar(&l.lim.ConsumerGroupSessionTimeout, prefix+"consumer-group-session-timeout", group.DefaultConsumerSessionTimeout, "drop a next-generation (KIP-848) group member that sends no heartbeat this long (Kafka's group.consumer.session.timeout.ms)")
	f.DurationVar(&l.lim.ConsumerGroupHeartbeatInterval, prefix+"consumer-group-heartbeat-interval", group.DefaultConsumerHeartbeatInterval, "how often next-generation (KIP-848) group members heartbeat (Kafka's group.consumer.heartbeat.interval.ms); keep it well under the session timeout")
	return l
}

// options sets the users file, the authorizer and the resource limits in o.
func (l *listenerFlags) options(o *broker.Options) error {
	if l.authorizer != "" && l.authorizer != "acl" {
		return fmt.Errorf("%s %q: the one authorizer is acl (or leave it out to let every client do anything)", l.flag("authorizer"), l.authorizer)
	}
	if l.authorizer == "" && (l.superUsers != "" || l.allowIfNoACL) {
		return fmt.Errorf("%s and %s need %s acl", l.flag("super-users"), l.flag("allow-everyone-if-no-acl-found"), l.flag("authorizer"))
	}
	o.UsersFile = l.usersFN
	o.ACL = l.authorizer == "acl"
	o.SuperUsers = strings.FieldsFunc(l.superUsers, func(r rune) bool { return r == ';' || r == ',' })
	o.AllowIfNoACL = l.allowIfNoACL
	o.IdleTimeout, o.RequestTimeout = l.lim.IdleTimeout, l.lim.RequestTimeout
	o.MaxRequestBytes, o.MaxConnRequestBytes = l.lim.MaxRequestBytes, l.lim.MaxConnRequestBytes
	o.MaxConnections, o.MaxConnectionsPerIP = l.lim.MaxConnections, l.lim.MaxConnectionsPerIP
	o.MaxPartitions = l.lim.MaxPartitions
	o.FlagPrefix = l.prefix // the broker's messages name these flags
	if l.lim.CleanerBufferBytes < 1<<20 || l.lim.CleanerThreads < 1 || l.lim.CleanerIOBytesPerSecond < 0 {
		return fmt.Errorf("%s needs at least 1 MiB (%d given), %s at least 1 (%d given), %s 0 or more",
			l.flag("log-cleaner-dedupe-buffer-size"), l.lim.CleanerBufferBytes, l.flag("log-cleaner-threads"), l.lim.CleanerThreads, l.flag("log-cleaner-io-max-bytes-per-second"))
	}
	o.CleanerBufferBytes, o.CleanerIOBytesPerSecond, o.CleanerThreads = l.lim.CleanerBufferBytes, l.lim.CleanerIOBytesPerSecond, l.lim.CleanerThreads
	if l.lim.ConsumerGroupHeartbeatInterval <= 0 || l.lim.ConsumerGroupSessionTimeout <= l.lim.ConsumerGroupHeartbeatInterval {
		return fmt.Errorf("%s %v must be positive and shorter than %s %v", l.flag("consumer-group-heartbeat-interval"), l.lim.ConsumerGroupHeartbeatInterval, l.flag("consumer-group-session-timeout"), l.lim.ConsumerGroupSessionTimeout)
	}
	o.ConsumerGroupSessionTimeout, o.ConsumerGroupHeartbeatInterval = l.lim.ConsumerGroupSessionTimeout, l.lim.ConsumerGroupHeartbeatInterval
	return nil
}

func (l *listenerFlags) flag(name string) string { return "--" + l.prefix + name }

// listeners checks the flags and returns the listeners to open, with
// their TLS configuration; none when every listener is off.
func (l *listenerFlags) listeners() ([]broker.ListenerConfig, error) {
	if (l.tlsCert == "") != (l.tlsKey == "") {
		return nil, fmt.Errorf("give both %s and %s, or neither", l.flag("tls-cert"), l.flag("tls-key"))
	}
	tlsListen := l.tlsListen
	if l.tlsCert == "" {
		if l.tlsClientCA != "" {
			return nil, fmt.Errorf("%s needs %s and %s: client certificates are checked on TLS listeners only", l.flag("tls-client-ca"), l.flag("tls-cert"), l.flag("tls-key"))
		}
		if l.saslSSL != listenOff {
			return nil, fmt.Errorf("%s needs %s and %s", l.flag("sasl-ssl-listen"), l.flag("tls-cert"), l.flag("tls-key"))
		}
		tlsListen = listenOff // the SSL listener runs only with a certificate
	}
	var tlsConfig *tls.Config
	if l.tlsCert != "" {
		var err error
		if tlsConfig, err = broker.ServerTLS(l.tlsCert, l.tlsKey, l.tlsClientCA); err != nil {
			return nil, fmt.Errorf("%s: %w", l.flag("tls-cert"), err)
		}
	}
	var out []broker.ListenerConfig
	for _, c := range []struct {
		name, addr string
		security   broker.SecurityProtocol
	}{
		{"listen", l.plain, broker.Plaintext},
		{"tls-listen", tlsListen, broker.SSL},
		{"sasl-listen", l.sasl, broker.SASLPlaintext},
		{"sasl-ssl-listen", l.saslSSL, broker.SASLSSL},
	} {
		if c.addr == listenOff {
			continue
		}
		if c.addr == "" {
			return nil, fmt.Errorf("%s is empty: write %s to switch that listener off, or an address such as 127.0.0.1:9092", l.flag(c.name), listenOff)
		}
		if err := broker.CheckListenAddr(c.addr); err != nil {
			return nil, fmt.Errorf("%s: %w", l.flag(c.name), err)
		}
		lc := broker.ListenerConfig{Addr: c.addr, Security: c.security}
		if c.security == broker.SSL || c.security == broker.SASLSSL {
			lc.TLS = tlsConfig
		}
		out = append(out, lc)
	}
	return out, nil
}

// builtin is the embedded broker's Config for `sluice run` and `sluice
// daemon`; with every listener off it has none, and the broker is not
// started.
func (l *listenerFlags) builtin() (builtinbroker.Config, error) {
	ls, err := l.listeners()
	if err != nil {
		return builtinbroker.Config{}, err
	}
	cfg := builtinbroker.Config{Listeners: ls}
	if err := l.options(&cfg.Options); err != nil {
		return builtinbroker.Config{}, err
	}
	return cfg, nil
}

// errAllOff is `sluice broker`'s refusal to run without a listener.
var errAllOff = errors.New("every listener is off: keep --listen, or give --sasl-listen, or --tls-cert and --tls-key")
