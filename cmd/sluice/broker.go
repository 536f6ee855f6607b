package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/broker"
)

func newBrokerCmd() *cobra.Command {
	var (
		data, advertised, metricsAddr string
		autoCreate                    bool
		partitions, nodeID            int32
		retention                     time.Duration
		retentionBytes, segmentBytes  int64
		sec                           *listenerFlags
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
not in the file stay.

sluice run and sluice daemon take the same listener, TLS, user, ACL and
limit flags for their embedded broker, prefixed broker- (--broker-listen,
--broker-sasl-ssl-listen, --broker-tls-cert, --broker-authorizer,
--broker-max-connections, ...).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" {
				return errors.New("--data is required: the directory where the broker keeps its topics")
			}
			listeners, err := sec.listeners()
			if err != nil {
				return err
			}
			if len(listeners) == 0 {
				return errAllOff
			}
			opts := broker.Options{
				NodeID:            nodeID,
				AdvertisedAddr:    advertised,
				AutoCreateTopics:  autoCreate,
				DefaultPartitions: partitions,
				RetentionAge:      retention,
				RetentionBytes:    retentionBytes,
				SegmentBytes:      segmentBytes,
				Logger:            slog.Default(),
			}
			if err := sec.options(&opts); err != nil {
				return err
			}
			b, err := broker.Open(data, opts)
			if err != nil {
				return err
			}
			for _, lc := range listeners {
				if lc.Security != broker.Plaintext && advertised != "" {
					// Clients of this listener must come back to it, not
					// to --listen's port.
					lc.AdvertisedHost, _, _ = net.SplitHostPort(advertised)
				}
				if _, err := b.ListenWith(lc); err != nil {
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
	sec = addListenerFlags(f, "")
	f.Int32Var(&nodeID, "node-id", 0, "the broker's node id in metadata (Kafka's node.id), 0 or more")
	f.StringVar(&advertised, "advertised-addr", "", "host:port clients of --listen are told to connect to; the other listeners advertise its host with their own port (default: the address a client connected to)")
	f.StringVar(&metricsAddr, "metrics", "", "serve Prometheus /metrics on this address (off by default)")
	f.BoolVar(&autoCreate, "auto-create-topics", false, "create unknown topics on first produce or metadata request")
	f.Int32Var(&partitions, "default-partitions", 1, "partitions of auto-created topics")
	f.DurationVar(&retention, "retention", 168*time.Hour, "default retention by time (negative keeps forever)")
	f.Int64Var(&retentionBytes, "retention-bytes", -1, "default retention by size per partition (-1: unlimited)")
	f.Int64Var(&segmentBytes, "segment-bytes", 1<<30, "default segment file size")
	return cmd
}
