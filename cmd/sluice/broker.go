package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/broker"
)

// listenOff switches a listener off. An empty address is refused rather
// than read as off, since it used to mean every interface.
const listenOff = "off"

func newBrokerCmd() *cobra.Command {
	var (
		data, listen, tlsListen, tlsCert, tlsKey, advertised, metricsAddr string
		authorizer, superUsers                                            string
		saslListen, saslSSLListen, usersFile, tlsClientCA                 string
		autoCreate, allowIfNoACL                                          bool
		partitions, nodeID                                                int32
		retention                                                         time.Duration
		retentionBytes, segmentBytes                                      int64
		lim                                                               broker.Options
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the built-in single-node Kafka broker",
		Long: `Run the built-in single-node Kafka broker. Any Kafka client can produce to and
consume from it. Data lives under --data; SIGTERM or Ctrl-C syncs it and exits.

Listeners (each takes host:port, or "off"; the host is never implied, so
write 0.0.0.0:9092 to listen on every interface):
  --listen           PLAINTEXT: anyone who connects, as User:ANONYMOUS
  --tls-listen       SSL, with --tls-cert/--tls-key; with --tls-client-ca
                     clients need a certificate from that CA and are
                     "User:" + its subject (e.g. User:CN=alice,O=Example)
  --sasl-listen      SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
  --sasl-ssl-listen  SASL_SSL, with --tls-cert/--tls-key

SASL users come from --sasl-users, a YAML list:
  - name: alice
    password: s3cret
    mechanisms: [SCRAM-SHA-512]   # default: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
and from AlterUserScramCredentials (sluice user set, kafka-configs.sh).
Only salted SCRAM credentials are stored, in the data directory. At every
start the file sets the passwords of the users it names and removes the
users it made earlier and no longer names; users added through the API and
not in the file stay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" {
				return errors.New("--data is required: the directory where the broker keeps its topics")
			}
			if (tlsCert == "") != (tlsKey == "") {
				return errors.New("give both --tls-cert and --tls-key, or neither")
			}
			if authorizer != "" && authorizer != "acl" {
				return fmt.Errorf("--authorizer %q: the one authorizer is acl (or leave it out to let every client do anything)", authorizer)
			}
			if authorizer == "" && (superUsers != "" || allowIfNoACL) {
				return errors.New("--super-users and --allow-everyone-if-no-acl-found need --authorizer acl")
			}
			supers := strings.FieldsFunc(superUsers, func(r rune) bool { return r == ';' || r == ',' })
			if tlsClientCA != "" && tlsCert == "" {
				return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked on TLS listeners only")
			}
			if tlsCert == "" {
				tlsListen = listenOff // the TLS listener runs only with a certificate
				if saslSSLListen != listenOff {
					return errors.New("--sasl-ssl-listen needs --tls-cert and --tls-key")
				}
			}
			listeners := []struct {
				flag, addr string
				security   broker.SecurityProtocol
			}{
				{"--listen", listen, broker.Plaintext},
				{"--tls-listen", tlsListen, broker.SSL},
				{"--sasl-listen", saslListen, broker.SASLPlaintext},
				{"--sasl-ssl-listen", saslSSLListen, broker.SASLSSL},
			}
			var configs []broker.ListenerConfig
			for _, l := range listeners {
				if l.addr == listenOff {
					continue
				}
				if l.addr == "" {
					return fmt.Errorf("%s is empty: write %s to switch that listener off, or an address such as 127.0.0.1:9092", l.flag, listenOff)
				}
				if err := broker.CheckListenAddr(l.addr); err != nil {
					return fmt.Errorf("%s: %w", l.flag, err)
				}
				configs = append(configs, broker.ListenerConfig{Addr: l.addr, Security: l.security})
			}
			if len(configs) == 0 {
				return errors.New("every listener is off: keep --listen, or give --sasl-listen, or --tls-cert and --tls-key")
			}
			var tlsConfig *tls.Config
			if tlsCert != "" {
				var err error
				if tlsConfig, err = broker.ServerTLS(tlsCert, tlsKey, tlsClientCA); err != nil {
					return err
				}
			}
			b, err := broker.Open(data, broker.Options{
				NodeID:            nodeID,
				AdvertisedAddr:    advertised,
				AutoCreateTopics:  autoCreate,
				DefaultPartitions: partitions,
				RetentionAge:      retention,
				RetentionBytes:    retentionBytes,
				SegmentBytes:      segmentBytes,
				Logger:            slog.Default(),
				ACL:               authorizer == "acl",
				SuperUsers:        supers,
				AllowIfNoACL:      allowIfNoACL,
				UsersFile:         usersFile,

				IdleTimeout:         lim.IdleTimeout,
				RequestTimeout:      lim.RequestTimeout,
				MaxRequestBytes:     lim.MaxRequestBytes,
				MaxConnRequestBytes: lim.MaxConnRequestBytes,
				MaxConnections:      lim.MaxConnections,
				MaxConnectionsPerIP: lim.MaxConnectionsPerIP,
				MaxPartitions:       lim.MaxPartitions,
			})
			if err != nil {
				return err
			}
			for _, cfg := range configs {
				if cfg.Security == broker.SSL || cfg.Security == broker.SASLSSL {
					cfg.TLS = tlsConfig
				}
				if cfg.Security != broker.Plaintext && advertised != "" {
					// Clients of this listener must come back to it, not
					// to --listen's port.
					cfg.AdvertisedHost, _, _ = net.SplitHostPort(advertised)
				}
				if _, err := b.ListenWith(cfg); err != nil {
					b.Close()
					return err
				}
			}
			var srv *http.Server
			if metricsAddr != "" {
				reg := prometheus.NewRegistry()
				reg.MustRegister(b.Metrics().Collectors()...)
				mux := http.NewServeMux()
				mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				ml, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					b.Close()
					return fmt.Errorf("--metrics %s: %w", metricsAddr, err)
				}
				srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go srv.Serve(ml)
				slog.Info("metrics on http://" + ml.Addr().String() + "/metrics")
			}
			<-cmd.Context().Done()
			slog.Info("shutting down")
			if srv != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				srv.Shutdown(ctx)
				cancel()
			}
			if err := b.Close(); err != nil {
				return fmt.Errorf("close broker: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "data directory (required)")
	f.StringVar(&listen, "listen", "127.0.0.1:9092", "PLAINTEXT listener address, or off")
	f.StringVar(&tlsListen, "tls-listen", "127.0.0.1:9093", "SSL listener address, or off; used with --tls-cert and --tls-key")
	f.StringVar(&saslListen, "sasl-listen", listenOff, "SASL_PLAINTEXT listener address (needs --sasl-users or stored users), or off")
	f.StringVar(&saslSSLListen, "sasl-ssl-listen", listenOff, "SASL_SSL listener address (needs --tls-cert, --tls-key and users), or off")
	f.StringVar(&usersFile, "sasl-users", "", "YAML file of SASL users: a list of {name, password, mechanisms}")
	f.StringVar(&tlsClientCA, "tls-client-ca", "", "PEM CA file: TLS listeners require client certificates signed by it (mTLS)")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate file; enables the TLS listener")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key file for --tls-cert")
	f.Int32Var(&nodeID, "node-id", 0, "the broker's node id in metadata (Kafka's node.id), 0 or more")
	f.StringVar(&advertised, "advertised-addr", "", "host:port clients of --listen are told to connect to; the other listeners advertise its host with their own port (default: the address a client connected to)")
	f.StringVar(&metricsAddr, "metrics", "", "serve Prometheus /metrics on this address (off by default)")
	f.BoolVar(&autoCreate, "auto-create-topics", false, "create unknown topics on first produce or metadata request")
	f.Int32Var(&partitions, "default-partitions", 1, "partitions of auto-created topics")
	f.DurationVar(&retention, "retention", 168*time.Hour, "default retention by time (negative keeps forever)")
	f.Int64Var(&retentionBytes, "retention-bytes", -1, "default retention by size per partition (-1: unlimited)")
	f.Int64Var(&segmentBytes, "segment-bytes", 1<<30, "default segment file size")
	f.StringVar(&authorizer, "authorizer", "", `"acl" checks every request against the ACLs kept in --data (managed with sluice acl or kafka-acls.sh); without it every client may do anything`)
	f.StringVar(&superUsers, "super-users", "", `principals the ACLs do not apply to, separated by ';', e.g. "User:admin;User:ops"`)
	f.BoolVar(&allowIfNoACL, "allow-everyone-if-no-acl-found", false, "with --authorizer acl, allow what no ACL names a resource for (Kafka's allow.everyone.if.no.acl.found); by default it is denied")
	f.DurationVar(&lim.IdleTimeout, "idle-timeout", broker.DefaultIdleTimeout, "close a connection that sends nothing and waits for nothing this long")
	f.DurationVar(&lim.RequestTimeout, "request-timeout", broker.DefaultRequestTimeout, "close a connection that takes longer than this to send a request it started, or to read a response")
	f.Int64Var(&lim.MaxRequestBytes, "max-request-bytes", broker.DefaultRequestBytes, "bytes of requests in flight across all connections; over it, connections are not read until responses go out")
	f.Int64Var(&lim.MaxConnRequestBytes, "max-connection-request-bytes", broker.DefaultConnRequestBytes, "bytes of requests in flight on one connection (also the largest request accepted)")
	f.IntVar(&lim.MaxConnections, "max-connections", 0, fmt.Sprintf("open connections; more are closed at once (0: %d, or a quarter of the open-file limit if lower)", broker.DefaultMaxConnections))
	f.IntVar(&lim.MaxConnectionsPerIP, "max-connections-per-ip", 0, "open connections from one client address (0: no per-address cap)")
	f.IntVar(&lim.MaxPartitions, "max-partitions", 0, "partitions of all topics together (0: what the open-file limit allows after connections)")
	return cmd
}
