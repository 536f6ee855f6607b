package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// TestJSONLogIsReadable: in a JSON log a duration reads as in the text
// log, and positions are a structure rather than a string.
func TestJSONLogIsReadable(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	at := engine.Positions{{Topic: "t", Partition: 1}: 7, {Topic: "t", Partition: 0}: 5}
	log.Info("x", "retry_in", 1500*time.Millisecond, "positions", at, slog.Group("g", "took", time.Second))
	var line struct {
		RetryIn   string `json:"retry_in"`
		Positions []struct {
			Topic     string
			Partition int32
			Offset    int64
		}
		G struct{ Took string } `json:"g"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line.RetryIn != "1.5s" || line.G.Took != "1s" || len(line.Positions) != 2 || line.Positions[0].Offset != 5 || line.Positions[1].Offset != 7 {
		t.Fatalf("JSON log line %s", buf.String())
	}

	buf.Reset()
	if log, err = New(&buf, "text", "info"); err != nil {
		t.Fatal(err)
	}
	log.Info("x", "retry_in", 1500*time.Millisecond, "positions", at)
	if want := `retry_in=1.5s positions="{t/0:5 t/1:7}"`; !bytes.Contains(buf.Bytes(), []byte(want)) {
		t.Fatalf("text log line %q lacks %q", buf.String(), want)
	}
}
