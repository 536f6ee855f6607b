package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/pipelines"
)

const (
	// dialTimeout bounds connecting (TCP, TLS and SASL) to a broker.
	dialTimeout = kafkaconn.DialTimeout
	// metadataTTL bounds how stale kafka-go's cached cluster metadata may
	// be: Client.Metadata answers from that cache, so it also bounds how
	// late a new topic or partition is seen (kafka-go's default is 6s).
	metadataTTL = 2 * time.Second
)

// Connection is how to reach a Kafka cluster.
type Connection struct {
	Brokers []string
	TLS     *pipelines.TLS
	SASL    *pipelines.SASL
}

// transport builds a kafka-go transport for conn.
func (conn Connection) transport(clientID string) (*kafkago.Transport, error) {
	if len(conn.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers; list host:port addresses under brokers")
	}
	t := &kafkago.Transport{ClientID: clientID, DialTimeout: dialTimeout, MetadataTTL: metadataTTL}
	var err error
	if conn.TLS != nil {
		if t.TLS, err = kafkaconn.TLSConfig(*conn.TLS); err != nil {
			return nil, err
		}
	}
	if conn.SASL != nil {
		if t.SASL, err = saslMechanism(*conn.SASL); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (conn Connection) client(clientID string) (*kafkago.Client, error) {
	t, err := conn.transport(clientID)
	if err != nil {
		return nil, err
	}
	return &kafkago.Client{Addr: kafkago.TCP(conn.Brokers...), Transport: t}, nil
}

// kgoOpts are the franz-go client options that reach conn, logging to
// log. Receiver mode reads through franz-go (its group consumer drops the
// records of aborted transactions; kafka-go's reader cannot).
func (conn Connection) kgoOpts(clientID string, log *slog.Logger) ([]kgo.Opt, error) {
	return kafkaconn.KgoOptions(conn.Brokers, conn.TLS, conn.SASL, clientID, log)
}

func saslMechanism(c pipelines.SASL) (sasl.Mechanism, error) {
	switch c.Mechanism {
	case "plain":
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.Username, c.Password)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.Username, c.Password)
	}
	return nil, fmt.Errorf("kafka sasl.mechanism %q: use plain, scram-sha-256 or scram-sha-512", c.Mechanism)
}
