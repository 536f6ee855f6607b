// Package record holds the values a transform exchanges with the runtime:
// records, rejected records and the retryable error. It imports only the
// standard library, so engine (which aliases these types) and plugins/sdk
// share them without a plugin binary linking the runtime: the same values
// flow through a pipeline, through an in-process transform and, encoded,
// across the plugin boundary.
package record

import (
	"errors"
	"time"
)

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is the unit that flows through a pipeline. Topic, Partition and
// Offset say where the record was read from; for sources that are not Kafka
// they name the source's own stream and sequence.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
}

// Rejected is a record a transform refused, with the reason. Rejected records
// go to the pipeline's dead-letter destination in the same epoch as the batch.
type Rejected struct {
	Record Record
	Reason string
	Plugin string // the transform step that rejected it
}

// RetryableError marks a transient failure (a sink or broker unreachable):
// the engine retries the batch with backoff instead of stopping.
type RetryableError struct {
	Err   error
	After time.Duration // a hint; 0 = use the engine's backoff
}

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// Retryable wraps err as transient. A nil err stays nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &RetryableError{Err: err}
}

// IsRetryable reports whether err, or anything it wraps, is transient.
func IsRetryable(err error) bool {
	var r *RetryableError
	return errors.As(err, &r)
}
