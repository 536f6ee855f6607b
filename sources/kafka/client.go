package kafka

import (
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/pipelines"
)

// Connection is how to reach a Kafka cluster.
type Connection struct {
	Brokers []string
	TLS     *pipelines.TLS
	SASL    *pipelines.SASL
}

// kgoOpts are the franz-go client options that reach conn, logging to
// log. Both modes read through franz-go: its consumer decodes record
// batches without a copy per record and drops the records of aborted
// transactions (kafka-go's decoding dominated direct mode's profile, and
// its reader cannot drop aborted records).
func (conn Connection) kgoOpts(clientID string, log *slog.Logger) ([]kgo.Opt, error) {
	return kafkaconn.KgoOptions(conn.Brokers, conn.TLS, conn.SASL, clientID, log)
}
