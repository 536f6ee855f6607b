// Package kafkaconn turns a pipeline's brokers, tls: and sasl: blocks into
// Kafka client settings, so the Kafka source (kafka-go for direct mode,
// franz-go for receiver mode) and the Kafka sink (franz-go) connect the
// same way and report the same errors.
package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/pipelines"
)

// DialTimeout bounds connecting (TCP, TLS and SASL) to a broker.
const DialTimeout = 10 * time.Second

// KgoOptions are the franz-go options that reach brokers with the given
// tls: and sasl: blocks (either may be nil), logging to log.
func KgoOptions(brokers []string, tls *pipelines.TLS, auth *pipelines.SASL, clientID string, log *slog.Logger) ([]kgo.Opt, error) {
	if len(brokers) == 0 {
		return nil, errors.New("kafka: no brokers; list host:port addresses under brokers")
	}
	if log == nil {
		log = slog.Default()
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(clientID), kgo.DialTimeout(DialTimeout),
		kgo.WithLogger(kgoLogger{log})}
	if tls != nil {
		c, err := TLSConfig(*tls)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(c))
	}
	if auth != nil {
		m, err := kgoSASL(*auth)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func kgoSASL(c pipelines.SASL) (sasl.Mechanism, error) {
	switch c.Mechanism {
	case "plain":
		return plain.Auth{User: c.Username, Pass: c.Password}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka sasl.mechanism %q: use plain, scram-sha-256 or scram-sha-512", c.Mechanism)
}

// kgoLogger puts franz-go's log lines on slog: its errors and warnings
// (it retries them itself) as warnings, its info lines as debug.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	if level == kgo.LogLevelError || level == kgo.LogLevelWarn {
		lvl = slog.LevelWarn
	}
	l.log.Log(context.Background(), lvl, "kafka client: "+msg, keyvals...)
}
