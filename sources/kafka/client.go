package kafka

import (
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kgo"
	kgosasl "github.com/twmb/franz-go/pkg/sasl"
	kgoplain "github.com/twmb/franz-go/pkg/sasl/plain"
	kgoscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/internal/tlsconfig"
	"github.com/sluicehq/sluice/pipelines"
)

const (
	// dialTimeout bounds connecting (TCP, TLS and SASL) to a broker.
	dialTimeout = 10 * time.Second
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
		if t.TLS, err = tlsconfig.Load(*conn.TLS); err != nil {
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

// kgoOpts are the franz-go client options that reach conn: seeds, TLS and
// SASL. Receiver mode reads through franz-go (its group consumer drops the
// records of aborted transactions; kafka-go's reader cannot).
func (conn Connection) kgoOpts(clientID string) ([]kgo.Opt, error) {
	if len(conn.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers; list host:port addresses under brokers")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(conn.Brokers...), kgo.ClientID(clientID), kgo.DialTimeout(dialTimeout)}
	if conn.TLS != nil {
		c, err := tlsconfig.Load(*conn.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(c))
	}
	if conn.SASL != nil {
		m, err := kgoSASLMechanism(*conn.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func kgoSASLMechanism(c pipelines.SASL) (kgosasl.Mechanism, error) {
	switch c.Mechanism {
	case "plain":
		return kgoplain.Auth{User: c.Username, Pass: c.Password}.AsMechanism(), nil
	case "scram-sha-256":
		return kgoscram.Auth{User: c.Username, Pass: c.Password}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return kgoscram.Auth{User: c.Username, Pass: c.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka sasl.mechanism %q: use plain, scram-sha-256 or scram-sha-512", c.Mechanism)
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
