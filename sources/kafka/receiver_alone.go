package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/durable"
	"github.com/sluicehq/sluice/internal/kafkaconn"
)

// Receiver mode with a write-ahead log runs in one process: the sink's
// positions are sequences of one log, so a pipeline's partitions cannot be
// split between processes that each keep their own (direct mode splits a
// pipeline into tasks instead). Each log has an identity, made with it,
// that its receiver puts in its client ID, and the group's description
// shows every member's client ID: a receiver stops before reading when the
// group has a member with another log. It looks before joining, so a
// process started next to a running one never disturbs it, and once more
// at its first assignment, for two that joined at once (both stop then).
// A member with this receiver's own identity is not another process: only
// one process opens a log at a time, so it is a predecessor that died with
// its session still open, which a restart must not be refused for.

// errNotAlone is why a receiver stops when another process of its pipeline
// is in its group.
var errNotAlone = errors.New("receiver mode runs in one process")

const (
	// walIDFile, in the log's directory, holds the log's identity.
	walIDFile = "member"
	// walTag separates the pipeline from the log's identity in the client
	// ID of a receiver with a log: sluice-PIPELINE-wal-ID.
	walTag = "-wal-"
)

// walIdentity returns the identity of the log in dir, made on first use.
func walIdentity(dir string) (string, error) {
	path := filepath.Join(dir, walIDFile)
	b, err := os.ReadFile(path)
	if id := string(bytes.TrimSpace(b)); err == nil && isWALID(id) {
		return id, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("receiver write-ahead log identity: %w", err)
	}
	var raw [8]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("receiver write-ahead log: %w", err)
	}
	if err := durable.WriteFile(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("receiver write-ahead log identity: %w", err)
	}
	return id, nil
}

func isWALID(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 16 && err == nil
}

// clientID is the client ID of r's clients.
func (r *Receiver) clientID() string {
	if r.walID == "" {
		return "sluice-" + r.cfg.Pipeline
	}
	return "sluice-" + r.cfg.Pipeline + walTag + r.walID
}

// parseWALClientID returns the pipeline and log identity a receiver's
// client ID names; ok is false for any other client.
func parseWALClientID(clientID string) (pipeline, id string, ok bool) {
	i := strings.LastIndex(clientID, walTag)
	if i < 0 || !strings.HasPrefix(clientID, "sluice-") || !isWALID(clientID[i+len(walTag):]) {
		return "", "", false
	}
	return clientID[len("sluice-"):i], clientID[i+len(walTag):], true
}

// aloneBeforeJoin checks, through a client of its own, that no member of
// the group keeps another log, before r joins.
func (r *Receiver) aloneBeforeJoin(ctx context.Context, opts []kgo.Opt) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka receiver: %w", err)
	}
	defer cl.Close()
	return r.otherLog(ctx, cl)
}

// otherLog returns an error wrapping errNotAlone if a member of the group
// keeps another log, or why the group could not be described.
func (r *Receiver) otherLog(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, kafkaconn.DialTimeout)
	defer cancel()
	described, err := kadm.NewClient(cl).DescribeGroups(ctx, r.cfg.Group)
	if err == nil {
		err = described.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil // no member yet (brokers from Kafka 4.0 say so)
	}
	if err != nil {
		return engine.Retryable(fmt.Errorf("kafka receiver: describe group %s: %w", r.cfg.Group, err))
	}
	for _, m := range described[r.cfg.Group].Members {
		if pipeline, id, ok := parseWALClientID(m.ClientID); ok && id != r.walID {
			return fmt.Errorf("%w: another process of pipeline %s joined group %s (member %s, host %s); stop it (one that died leaves the group after its session timeout), or use mode: direct to split the pipeline into tasks",
				errNotAlone, pipeline, r.cfg.Group, m.MemberID, m.ClientHost)
		}
	}
	return nil
}
