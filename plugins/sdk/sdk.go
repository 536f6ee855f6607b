package sdk

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/sluicehq/sluice/internal/record"
)

// Record, Header and Rejected are the engine's types (it aliases the same
// ones): the same values flow in-process and across the plugin boundary.
// They live in a package of their own, so a plugin binary does not link
// the engine.
type (
	Record   = record.Record
	Header   = record.Header
	Rejected = record.Rejected
)

// RetryableError is a failure worth retrying; see Retryable.
type RetryableError = record.RetryableError

// Retryable marks err as transient: returned from Process (or, wrapped in
// FailBatch, from a per-record function), the batch fails and the engine
// retries it after a backoff instead of stopping the pipeline. It is the
// same error as the engine's Retryable. A nil err stays nil.
func Retryable(err error) error { return record.Retryable(err) }

// Transform is what a plugin implements. Any engine.Transform is one.
type Transform interface {
	// Process maps a batch; 0..n outputs per input. Per-record failures go
	// in rejected; a returned error fails the whole batch. in and the byte
	// slices of its records are only valid during the call: copy what you
	// keep. ctx bounds this call (the step's timeout).
	Process(ctx context.Context, in []Record) (out []Record, rejected []Rejected, err error)
}

// Configurer is the optional capability of a Transform that takes settings.
// Configure is called once per process start, before any Process.
type Configurer interface {
	Configure(ctx context.Context, s Settings) error
}

type batchError struct{ err error }

func (e *batchError) Error() string { return e.err.Error() }
func (e *batchError) Unwrap() error { return e.err }

// FailBatch marks an error returned from a per-record function (Map, Filter,
// FlatMap) as failing the whole batch rather than rejecting one record: use
// it when the cause is not the record (a lookup service is down). Wrap it in
// Retryable to have the batch retried.
func FailBatch(err error) error {
	if err == nil {
		return nil
	}
	return &batchError{err}
}

type recordFunc func(out []Record, r *Record) ([]Record, error)

type perRecord struct{ f recordFunc }

// recordWise is implemented by transforms that map records independently,
// so the host may split a batch across calls (see pluginpb.ConfigureResponse).
type recordWise interface{ recordWise() bool }

func (perRecord) recordWise() bool { return true }

func (p perRecord) Process(_ context.Context, in []Record) ([]Record, []Rejected, error) {
	out := make([]Record, 0, len(in))
	var rejected []Rejected
	for i := range in {
		var err error
		out, err = p.call(out, &in[i])
		if err != nil {
			var be *batchError
			if errors.As(err, &be) {
				return nil, nil, be.err
			}
			rejected = append(rejected, Rejected{Record: in[i], Reason: err.Error()})
		}
	}
	return out, rejected, nil
}

// call runs the per-record function on r. A panic rejects r, its reason
// naming the panic and where it happened, instead of killing the plugin
// process: one bad record costs one dead letter, not a batch retried until
// the pipeline stops.
func (p perRecord) call(out []Record, r *Record) (res []Record, err error) {
	n := len(out)
	defer func() {
		if v := recover(); v != nil {
			res, err = out[:n], panicError(v)
		}
	}()
	return p.f(out, r)
}

// panicError turns a recovered panic into one line: its value and the
// function, file and line that panicked. Call it from the deferred
// function that recovered.
func panicError(v any) error {
	var pcs [32]uintptr
	n := runtime.Callers(3, pcs[:]) // above panicError and the deferred function
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		// The first frame outside the runtime is the one that panicked
		// (runtime.gopanic and, for an index error, runtime.panicIndex
		// come before it).
		if f.Function != "" && !strings.HasPrefix(f.Function, "runtime.") {
			return fmt.Errorf("panic: %v (at %s:%d in %s)", v, filepath.Base(f.File), f.Line, f.Function)
		}
		if !more {
			return fmt.Errorf("panic: %v", v)
		}
	}
}

// Map makes a Transform that maps each record to one record. An error
// rejects the input record with the error's text as the reason; so does a
// panic, with "panic: VALUE (at FILE:LINE in FUNC)" as the reason.
func Map(f func(Record) (Record, error)) Transform {
	return perRecord{func(out []Record, r *Record) ([]Record, error) {
		m, err := f(*r)
		if err != nil {
			return out, err
		}
		return append(out, m), nil
	}}
}

// Filter makes a Transform that keeps the records for which f is true.
func Filter(f func(Record) (bool, error)) Transform {
	return perRecord{func(out []Record, r *Record) ([]Record, error) {
		keep, err := f(*r)
		if err != nil || !keep {
			return out, err
		}
		return append(out, *r), nil
	}}
}

// FlatMap makes a Transform that maps each record to zero or more records.
func FlatMap(f func(Record) ([]Record, error)) Transform {
	return perRecord{func(out []Record, r *Record) ([]Record, error) {
		more, err := f(*r)
		if err != nil {
			return out, err
		}
		return append(out, more...), nil
	}}
}

// Batch makes a Transform from a whole-batch function, for transforms that
// look across records (dedup, aggregation) or amortise a call per batch.
func Batch(f func(ctx context.Context, in []Record) ([]Record, []Rejected, error)) Transform {
	return batchFunc(f)
}

type batchFunc func(ctx context.Context, in []Record) ([]Record, []Rejected, error)

func (f batchFunc) Process(ctx context.Context, in []Record) ([]Record, []Rejected, error) {
	return f(ctx, in)
}
