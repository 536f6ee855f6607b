package stdout

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/internal/recordfmt"
)

// writeBuffer batches small lines into few write(2) calls; Commit flushes.
const writeBuffer = 64 << 10

// Sink prints records to w. It is not safe for concurrent use.
type Sink struct {
	format recordfmt.Format
	dst    io.Writer
	w      *bufio.Writer
}

// New returns a sink printing to w (os.Stdout in a pipeline). An unknown
// format falls back to raw; the pipeline linter reports it before this runs.
func New(cfg Config, w io.Writer) *Sink {
	f, err := recordfmt.Parse(cfg.Format)
	if err != nil || cfg.Format == "" {
		f = recordfmt.Raw
	}
	return &Sink{format: f, dst: w, w: bufio.NewWriterSize(w, writeBuffer)}
}

// Open returns no epoch: stdout keeps no positions; with at-least-once the
// engine keeps them itself.
func (s *Sink) Open(ctx context.Context, pipeline string) (uint64, engine.Positions, error) {
	return 0, nil, nil
}

// Write prints records into the buffer; some may reach w before Commit.
func (s *Sink) Write(ctx context.Context, epoch uint64, records []engine.Record) error {
	for i := range records {
		if _, err := s.w.Write(s.format.Append(s.w.AvailableBuffer(), &records[i])); err != nil {
			return fmt.Errorf("stdout sink: %w", err)
		}
	}
	return nil
}

// Commit flushes what Write buffered.
func (s *Sink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("stdout sink: %w", err)
	}
	return nil
}

// Abort drops what is still buffered; lines already flushed stay printed.
func (s *Sink) Abort(ctx context.Context, epoch uint64) error {
	s.w.Reset(s.dst)
	return nil
}

// Close flushes.
func (s *Sink) Close() error { return s.Commit(context.Background(), 0, nil) }
