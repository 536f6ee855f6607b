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
		// The small fields through proto, the packed records as they are:
		// protobuf allows fields in any order.
		head, err := proto.Marshal(&ProcessRequest{Slot: m.Slot, SlotLen: m.SlotLen, Call: m.Call})
		if err != nil {
			return nil, err
		}
		return bytesField(mem.BufferSlice{mem.SliceBuffer(head)}, 1, m.Records), nil
	case *ProcessResponse:
		if len(m.Records) > 0 {
			head, err := proto.Marshal(&ProcessResponse{Rejected: m.Rejected, Reasons: m.Reasons, SlotLen: m.SlotLen, StateWrites: m.StateWrites})
			if err != nil {
				return nil, err
			}
			// The plugin side gets Records from ResponseBuffer and never
			// touches a response after returning it, so the buffer goes
			// back to the pool once gRPC has written it.
			hdr := protowire.AppendVarint(protowire.AppendTag(head, 1, protowire.BytesType), uint64(len(m.Records)))
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
		records, err := unmarshalAliasing(data.MaterializeToBuffer(sharedPool).ReadOnlyData(), m)
		m.Records = records
		return err
	case *ProcessResponse:
		records, err := unmarshalAliasing(data.MaterializeToBuffer(sharedPool).ReadOnlyData(), m)
		m.Records = records
		return err
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("plugin codec: %T is not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(sharedPool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), msg)
}

// unmarshalAliasing decodes b into msg, except field 1 (the packed
// records), which it returns as a slice of b instead of copying it.
func unmarshalAliasing(b []byte, msg proto.Message) (records []byte, err error) {
	var rest []byte
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[off+n:])
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			records = v[:len(v):len(v)]
			off += n + m
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		rest = append(rest, b[off:off+n+m]...)
		off += n + m
	}
	if err := proto.Unmarshal(rest, msg); err != nil {
		return nil, err
	}
	return records, nil
}
