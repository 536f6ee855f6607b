package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/internal/durable"
)

// CheckpointStore keeps a pipeline's positions outside the sink, for the
// at-least-once and at-most-once delivery modes, where the sink is not
// transactional or positions are deliberately stored apart from output.
type CheckpointStore interface {
	// Load returns the last saved epoch and positions (0 and nil if none).
	Load(ctx context.Context) (epoch uint64, at Positions, err error)
	// Save durably stores epoch and at, replacing what was there.
	Save(ctx context.Context, epoch uint64, at Positions) error
}

// FileCheckpoints is a CheckpointStore in one file, replaced atomically
// (write, fsync, rename, fsync the directory) on every Save.
type FileCheckpoints struct {
	path string
}

// NewFileCheckpoints stores the checkpoint of pipeline under dir.
func NewFileCheckpoints(dir, pipeline string) *FileCheckpoints {
	return &FileCheckpoints{path: filepath.Join(dir, pipeline+".checkpoint.json")}
}

type checkpointFile struct {
	Epoch     uint64    `json:"epoch"`
	Positions Positions `json:"positions"`
}

// Load implements CheckpointStore.
func (f *FileCheckpoints) Load(context.Context) (uint64, Positions, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var c checkpointFile
	if err := json.Unmarshal(b, &c); err != nil {
		return 0, nil, fmt.Errorf("checkpoint %s is corrupt (%v); delete it to start over from the sink's state", f.path, err)
	}
	return c.Epoch, c.Positions, nil
}

// Save implements CheckpointStore.
func (f *FileCheckpoints) Save(_ context.Context, epoch uint64, at Positions) error {
	b, err := json.Marshal(checkpointFile{Epoch: epoch, Positions: at})
	if err != nil {
		return err
	}
	if err := durable.WriteFile(f.path, b); err != nil {
		return Retryable(fmt.Errorf("save checkpoint: %w", err))
	}
	return nil
}
