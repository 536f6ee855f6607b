package stdout

import (
	"bytes"
	"context"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

func TestSink(t *testing.T) {
	recs := []engine.Record{
		{Topic: "t", Offset: 1, Key: []byte("k"), Value: []byte("one")},
		{Topic: "t", Offset: 2, Value: []byte("two")},
	}
	tests := []struct {
		format string
		want   string
	}{
		{"", "one\ntwo\n"},
		{"raw", "one\ntwo\n"},
		{"jsonl", `{"topic":"t","partition":0,"offset":1,"key":"k","value":"one","timestamp":null,"headers":[]}` + "\n" +
			`{"topic":"t","partition":0,"offset":2,"key":null,"value":"two","timestamp":null,"headers":[]}` + "\n"},
	}
	for _, tt := range tests {
		t.Run("format="+tt.format, func(t *testing.T) {
			ctx := context.Background()
			var out bytes.Buffer
			s := New(Config{Format: tt.format}, &out)
			if e, p, err := s.Open(ctx, "p"); e != 0 || p != nil || err != nil {
				t.Fatalf("Open = %d, %v, %v; want 0, nil, nil", e, p, err)
			}
			if err := s.Write(ctx, 1, recs); err != nil {
				t.Fatal(err)
			}
			if out.Len() != 0 {
				t.Fatalf("small batch reached the writer before Commit: %q", out.String())
			}
			if err := s.Commit(ctx, 1, nil); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("output:\n got %q\nwant %q", out.String(), tt.want)
			}
		})
	}
}

func TestAbortDropsBuffered(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	s := New(Config{}, &out)
	s.Write(ctx, 1, []engine.Record{{Value: []byte("dropped")}})
	s.Abort(ctx, 1)
	s.Write(ctx, 1, []engine.Record{{Value: []byte("kept")}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "kept\n" {
		t.Errorf("output = %q, want %q", out.String(), "kept\n")
	}
}
