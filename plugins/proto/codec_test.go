package pluginpb

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

func TestCodecMatchesProto(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		into func() proto.Message
	}{
		{"request", &ProcessRequest{Records: []byte("packed records")}, func() proto.Message { return new(ProcessRequest) }},
		{"request in shared memory", &ProcessRequest{Slot: 1, SlotLen: 12345}, func() proto.Message { return new(ProcessRequest) }},
		{"response in shared memory", &ProcessResponse{SlotLen: 99, Reasons: []string{"x"}, Rejected: []byte("r")}, func() proto.Message { return new(ProcessResponse) }},
		{"empty request", &ProcessRequest{}, func() proto.Message { return new(ProcessRequest) }},
		{"response", &ProcessResponse{Records: []byte("out")}, func() proto.Message { return new(ProcessResponse) }},
		{"response with rejects", &ProcessResponse{Records: []byte("out"), Rejected: []byte("rej"), Reasons: []string{"a", "", "c"}}, func() proto.Message { return new(ProcessResponse) }},
		{"stateful request", &ProcessRequest{Records: []byte("packed"), Call: 7}, func() proto.Message { return new(ProcessRequest) }},
		{"response with state writes", &ProcessResponse{Records: []byte("out"), StateWrites: []byte("writes")}, func() proto.Message { return new(ProcessResponse) }},
		{"state writes only", &ProcessResponse{StateWrites: []byte("writes")}, func() proto.Message { return new(ProcessResponse) }},
		{"other message", &ConfigureRequest{SettingsJson: []byte(`{"a":1}`), Pipeline: "p", Step: "s", Worker: 3}, func() proto.Message { return new(ConfigureRequest) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := codec{}.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			// Plain protobuf on the wire (field order may differ from proto's).
			plain := tt.into()
			if err := proto.Unmarshal(data.Materialize(), plain); err != nil || !proto.Equal(plain, tt.msg) {
				t.Fatalf("proto reads the codec's bytes as %v (%v), want %v", plain, err, tt.msg)
			}
			want, err := proto.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			// Decode from many small buffers, as gRPC hands over frames.
			var frames mem.BufferSlice
			for i := 0; i < len(want); i += 3 {
				frames = append(frames, mem.SliceBuffer(want[i:min(i+3, len(want))]))
			}
			got := tt.into()
			if err := (codec{}).Unmarshal(frames, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.msg) {
				t.Fatalf("decoded %v, want %v", got, tt.msg)
			}
		})
	}
}

func TestCodecRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{{0x0a, 0x05, 'a'}, {0xff}} {
		if err := (codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, new(ProcessRequest)); err == nil {
			t.Errorf("Unmarshal(%x) succeeded", b)
		}
	}
}
