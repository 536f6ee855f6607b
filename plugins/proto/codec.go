package pluginpb

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// codec is the protobuf codec for plugin connections, with the two hot
// messages special-cased so that a batch's packed records are not copied
// on the way out (they are sent from the caller's buffer) nor on the way
// in (they alias the received message). The wire format is plain protobuf.
// Everything else, go-plugin's own services included, goes through the
// proto package as usual.
type codec struct{}

var _ encoding.CodecV2 = codec{}

// Name is "proto": the content-type stays application/grpc+proto.
func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *ProcessRequest:
		return bytesField(nil, 1, m.Records), nil
	case *ProcessResponse:
		if len(m.Rejected) == 0 && len(m.Reasons) == 0 && len(m.Records) > 0 {
			// The plugin side gets Records from ResponseBuffer and never
			// touches a response after returning it, so the buffer goes
			// back to the pool once gRPC has written it.
			hdr := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.BytesType), uint64(len(m.Records)))
			b := m.Records
			return mem.BufferSlice{mem.SliceBuffer(hdr), mem.NewBuffer(&b, sharedPool)}, nil
		}
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("plugin codec: %T is not a protobuf message", v)
	}
	bp := sharedPool.Get(proto.Size(msg))
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*bp)[:0], msg)
	if err != nil {
		sharedPool.Put(bp)
		return nil, err
	}
	*bp = b
	return mem.BufferSlice{mem.NewBuffer(bp, sharedPool)}, nil
}

// bytesField appends field num holding b, without copying b.
func bytesField(s mem.BufferSlice, num protowire.Number, b []byte) mem.BufferSlice {
	if len(b) == 0 {
		return s // proto3 leaves empty bytes out
	}
	hdr := protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.BytesType), uint64(len(b)))
	return append(s, mem.SliceBuffer(hdr), mem.SliceBuffer(b))
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *ProcessRequest:
		// The contiguous copy is never returned to the pool: the message
		// aliases it, and the garbage collector frees it with the message.
		b := data.MaterializeToBuffer(sharedPool).ReadOnlyData()
		return parseBytesFields(b, func(num protowire.Number, f []byte) {
			if num == 1 {
				m.Records = f
			}
		})
	case *ProcessResponse:
		b := data.MaterializeToBuffer(sharedPool).ReadOnlyData()
		return parseBytesFields(b, func(num protowire.Number, f []byte) {
			switch num {
			case 1:
				m.Records = f
			case 2:
				m.Rejected = f
			case 3:
				m.Reasons = append(m.Reasons, string(f))
			}
		})
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("plugin codec: %T is not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(sharedPool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), msg)
}

// parseBytesFields calls f for every length-delimited field of a message
// (the only kind ProcessRequest and ProcessResponse have) and skips others.
func parseBytesFields(b []byte, f func(protowire.Number, []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		f(num, v[:len(v):len(v)])
		b = b[n:]
	}
	return nil
}
