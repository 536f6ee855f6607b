package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

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
		if t.TLS, err = tlsConfig(*conn.TLS); err != nil {
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

func tlsConfig(c pipelines.TLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.SkipVerify}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("kafka tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka tls.ca %s: no PEM certificates in it", c.CA)
		}
		cfg.RootCAs = pool
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, errors.New("kafka tls: give both cert and key for a client certificate, or neither")
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("kafka tls.cert/tls.key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
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
