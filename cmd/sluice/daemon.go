package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/daemon"
)

func newDaemonCmd() *cobra.Command {
	var (
		cfg    daemon.Config
		listen *listenerFlags
	)
	cmd := &cobra.Command{
		Use:   "daemon --pipelines DIR",
		Short: "Run the embedded broker and every pipeline in a directory, with an HTTP API",
		Long: `Run the embedded broker and every pipeline file (*.yaml, *.yml) in --pipelines.
A pipeline that stops with an error is restarted with backoff; a file that
changes is reloaded (drain, commit, restart); a removed file stops its
pipeline; an invalid file is reported and skipped until fixed.

HTTP (--http): the status page at /, GET /pipelines, GET /pipelines/{name},
POST /pipelines/{name}/pause|resume|restart, GET /metrics, /healthz, /readyz.
A POST needs the token in --http-token-file (generated on first start):
  curl -X POST -H "Authorization: Bearer $(cat DATA/http-token)" URL
Requests are answered only for Host localhost, 127.0.0.1, [::1] or the
listen address (with its port) or a --http-allowed-host name, and a POST
from another origin (browser Origin or Sec-Fetch-Site) or with a body
that is not application/json is refused. /metrics, /healthz and /readyz
need no token and also answer any IP address as Host.
SIGTERM or Ctrl-C drains every pipeline and exits 0.

The embedded broker takes the listener, TLS, SASL, ACL and limit flags of
sluice broker, prefixed broker- (--broker-sasl-ssl-listen, --broker-tls-cert,
--broker-max-connections, ...); with
every listener off it is not started. A pipeline with brokers: [builtin]
connects as any client: its tls: and sasl: blocks pick the listener.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger, cfg.Version = slog.Default(), version
			bcfg, err := listen.builtin()
			if err != nil {
				return err
			}
			cfg.Broker = bcfg
			d, err := daemon.New(cfg)
			if err != nil {
				return err
			}
			return d.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.PipelinesDir, "pipelines", "", "directory of pipeline files (required)")
	f.StringVar(&cfg.DataDir, "data", "./data", "directory for local state and the built-in broker")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "HTTP API and /metrics address (empty: off)")
	f.StringVar(&cfg.TokenFile, "http-token-file", "", "bearer token of POST requests; generated (mode 0600) if absent (default DATA/"+daemon.TokenFileName+")")
	f.StringArrayVar(&cfg.AllowedHosts, "http-allowed-host", nil, "a Host name the API also answers, NAME (any port) or NAME:PORT (repeatable)")
	listen = addListenerFlags(f, "broker-")
	return cmd
}
