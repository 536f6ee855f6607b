package pluginpb

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
)

// ProtocolVersion is the plugin protocol version in the go-plugin
// handshake. Bump it on any incompatible change to transform.proto or the
// packed record encoding: a host then refuses a plugin built against another
// version with a message naming both versions, instead of misreading it.
const ProtocolVersion = 1

// PluginName is the one plugin a plugin process dispenses.
const PluginName = "transform"

// Hard limits of one gRPC message between host and plugin.
const (
	// MaxMessageBytes bounds one Process request or response. A flat-map
	// plugin can grow a batch several times over, so the ceiling is well
	// above the request chunk size; past it the call fails with a message
	// that says to lower the batch size.
	MaxMessageBytes = 256 << 20
	// MaxRequestBytes is where the host cuts a batch into several Process
	// calls, so that large batches stay far from MaxMessageBytes and memory
	// per call stays bounded on both sides.
	MaxRequestBytes = 16 << 20
	// WindowBytes is the HTTP/2 flow-control window: large enough that a
	// multi-megabyte batch is not throttled by window updates on a local
	// socket.
	WindowBytes = 16 << 20
	// SocketBufferBytes is gRPC's read and write buffer per connection.
	// The default (32 KiB) made a 1 MiB batch cost dozens of syscalls
	// each way; a profile showed syscalls as the largest cost after the
	// transform itself.
	SocketBufferBytes = 1 << 20
)

// Limits of keyed state over the plugin protocol (stateful steps). The
// host enforces them on what a plugin sends; the SDK checks them where the
// plugin calls it, so a plugin learns of a bad write at its Put.
const (
	// MaxStateKeyBytes and MaxStateValueBytes are the state store's own
	// limits (state.MaxKeyBytes, state.MaxValueBytes; a host test keeps
	// them equal), repeated here because a plugin must not link the
	// engine: a key is held in every batch overlay and index, a value
	// travels in one changelog record.
	MaxStateKeyBytes   = 4 << 10
	MaxStateValueBytes = 256 << 10
	// MaxStateGetKeys bounds the keys of one State.Get request (the SDK
	// splits a larger prefetch), so a request stays far below
	// MaxMessageBytes even with keys at their limit (16 MiB).
	MaxStateGetKeys = 4096
	// StateReplyBytes is where the host cuts a Get answer or a Scan page:
	// the SDK asks again for the rest. Large enough that a page costs
	// little per entry, small enough that neither side holds much.
	StateReplyBytes = 4 << 20
)

// Handshake is the go-plugin handshake every Sluice plugin and host share.
// The cookie only keeps people from running a plugin binary by hand; it is
// not security.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SLUICE_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "b6f3c8e0-sluice-transform",
}

// GoPlugin adapts the Transform service to go-plugin. The plugin side sets
// Impl; the host side leaves it nil and dispenses a TransformClient.
type GoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl TransformServer
}

// BrokerUser is a TransformServer that dials services of the host (the
// State service of a stateful step) over go-plugin's broker.
type BrokerUser interface {
	UseBroker(*plugin.GRPCBroker)
}

// GRPCServer registers the plugin's service.
func (p *GoPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if u, ok := p.Impl.(BrokerUser); ok {
		u.UseBroker(b)
	}
	RegisterTransformServer(s, p.Impl)
	return nil
}

// HostClient is what the host side dispenses: the plugin's Transform
// service and the broker on which the host serves its own services to it.
type HostClient struct {
	TransformClient
	Broker *plugin.GRPCBroker
}

// GRPCClient returns a *HostClient on the host side.
func (p *GoPlugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &HostClient{TransformClient: NewTransformClient(c), Broker: b}, nil
}

// ServerOptions are the gRPC server options both sides agree on.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.InitialWindowSize(WindowBytes),
		grpc.InitialConnWindowSize(WindowBytes),
		grpc.ReadBufferSize(SocketBufferBytes),
		grpc.WriteBufferSize(SocketBufferBytes),
		experimental.BufferPool(sharedPool),
		grpc.ForceServerCodecV2(codec{}),
	}
}

// DialOptions are the matching gRPC client options.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes), grpc.ForceCodecV2(codec{})),
		grpc.WithInitialWindowSize(WindowBytes),
		grpc.WithInitialConnWindowSize(WindowBytes),
		grpc.WithReadBufferSize(SocketBufferBytes),
		grpc.WithWriteBufferSize(SocketBufferBytes),
		experimental.WithBufferPool(sharedPool),
	}
}
