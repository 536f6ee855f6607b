package sinks

import (
	"testing"

	"github.com/sluicehq/sluice/engine"
)

func TestDeadLetter(t *testing.T) {
	in := engine.Rejected{
		Record: engine.Record{Topic: "clicks", Partition: 2, Offset: 41, Value: []byte("v"),
			Headers: []engine.Header{{Key: "trace", Value: []byte("t1")}}},
		Reason: "missing user", Plugin: "jsonpath",
	}
	got := DeadLetter(in)
	want := []engine.Header{
		{Key: "trace", Value: []byte("t1")},
		{Key: HeaderReason, Value: []byte("missing user")},
		{Key: HeaderPlugin, Value: []byte("jsonpath")},
		{Key: HeaderTopic, Value: []byte("clicks")},
		{Key: HeaderPartition, Value: []byte("2")},
		{Key: HeaderOffset, Value: []byte("41")},
	}
	if len(got.Headers) != len(want) {
		t.Fatalf("headers = %v, want %v", got.Headers, want)
	}
	for i := range want {
		if got.Headers[i].Key != want[i].Key || string(got.Headers[i].Value) != string(want[i].Value) {
			t.Errorf("header %d = %s=%q, want %s=%q", i, got.Headers[i].Key, got.Headers[i].Value, want[i].Key, want[i].Value)
		}
	}
	if len(in.Record.Headers) != 1 {
		t.Errorf("DeadLetter changed the input's headers: %v", in.Record.Headers)
	}
	if string(got.Value) != "v" || got.Offset != 41 {
		t.Errorf("record = %+v, want the rejected record's key, value and position", got)
	}
}
