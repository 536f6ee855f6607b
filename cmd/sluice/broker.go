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

func newBrokerCmd() *cobra.Command {
	var (
		data, listen, tlsListen, tlsCert, tlsKey, advertised, metricsAddr string
		authorizer, superUsers                                            string
		autoCreate, allowIfNoACL                                          bool
		partitions                                                        int32
		retention                                                         time.Duration
		retentionBytes, segmentBytes                                      int64
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the built-in single-node Kafka broker",
		Long: `Run the built-in single-node Kafka broker. Any Kafka client can produce to and
consume from it. Data lives under --data; SIGTERM or Ctrl-C syncs it and exits.`,
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
			b, err := broker.Open(data, broker.Options{
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
			})
			if err != nil {
				return err
			}
			serveErr := make(chan error, 3)
			serve := func(l net.Listener) {
				go func() { serveErr <- b.Serve(l) }()
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				b.Close()
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			serve(l)
			if tlsCert != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					b.Close()
					return fmt.Errorf("load --tls-cert/--tls-key: %w", err)
				}
				tl, err := net.Listen("tcp", tlsListen)
				if err != nil {
					b.Close()
					return fmt.Errorf("--tls-listen %s: %w", tlsListen, err)
				}
				serve(tls.NewListener(tl, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
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
			select {
			case <-cmd.Context().Done():
				slog.Info("shutting down")
			case err := <-serveErr:
				slog.Error("listener failed", "err", err)
			}
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
	f.StringVar(&listen, "listen", "127.0.0.1:9092", "plain Kafka listener address")
	f.StringVar(&tlsListen, "tls-listen", "127.0.0.1:9093", "TLS listener address, used with --tls-cert and --tls-key")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate file; enables the TLS listener")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key file for --tls-cert")
	f.StringVar(&advertised, "advertised-addr", "", "host:port clients are told to connect to (default: the address they connected to)")
	f.StringVar(&metricsAddr, "metrics", "", "serve Prometheus /metrics on this address (off by default)")
	f.BoolVar(&autoCreate, "auto-create-topics", false, "create unknown topics on first produce or metadata request")
	f.Int32Var(&partitions, "default-partitions", 1, "partitions of auto-created topics")
	f.DurationVar(&retention, "retention", 168*time.Hour, "default retention by time (negative keeps forever)")
	f.Int64Var(&retentionBytes, "retention-bytes", -1, "default retention by size per partition (-1: unlimited)")
	f.Int64Var(&segmentBytes, "segment-bytes", 1<<30, "default segment file size")
	f.StringVar(&authorizer, "authorizer", "", `"acl" checks every request against the ACLs kept in --data (managed with sluice acl or kafka-acls.sh); without it every client may do anything`)
	f.StringVar(&superUsers, "super-users", "", `principals the ACLs do not apply to, separated by ';', e.g. "User:admin;User:ops"`)
	f.BoolVar(&allowIfNoACL, "allow-everyone-if-no-acl-found", false, "with --authorizer acl, allow what no ACL names a resource for (Kafka's allow.everyone.if.no.acl.found); by default it is denied")
	return cmd
}
