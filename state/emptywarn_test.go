package state

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// Local-only state with nothing in the data directory while the sink has
// committed epochs: the restore goes on (a new stateful step) but says the
// state starts empty, since a lost directory looks the same.
func TestRestoreWarnsOfEmptyLocalState(t *testing.T) {
	for _, committed := range []uint64{0, 7} {
		var logs bytes.Buffer
		d, err := Open(context.Background(), Options{DataDir: t.TempDir(), Pipeline: "p",
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Restore(context.Background(), nil, func(engine.Task) uint64 { return committed }); err != nil {
			t.Fatal(err)
		}
		d.Close()
		warned := strings.Contains(logs.String(), "the state starts empty")
		if warned != (committed > 0) {
			t.Errorf("sink at epoch %d: warned=%v; logs:\n%s", committed, warned, logs.String())
		}
	}
}
