package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/plugins/internal/wire"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
	"github.com/sluicehq/sluice/plugins/sdk"
)

// Names under which the test binary serves the stateful test plugins.
const (
	testStatePluginName    = "sluice-test-state-plugin"
	testBadStatePluginName = "sluice-test-bad-state-plugin"
)

// testStatePlugin runs one command per record on the state of the
// record's task and outputs the result:
//
//	put K V | get K | del K | scan PREFIX | incr K | count K (incr, its
//	keys prefetched for the whole batch first) | prefetch K... |
//	fail (fails the batch) | crash (exits the process) | other-task (writes a task not in the batch) |
//	big-ignored (a Put over the value limit whose error is dropped)
func testStatePlugin() sdk.Transform {
	return sdk.Batch(func(ctx context.Context, in []sdk.Record) ([]sdk.Record, []sdk.Rejected, error) {
		st := sdk.State(ctx)
		counted := map[int32][]string{}
		for _, r := range in {
			if k, ok := strings.CutPrefix(string(r.Value), "count "); ok {
				counted[r.Partition] = append(counted[r.Partition], k)
			}
		}
		for task, keys := range counted {
			if err := st.Prefetch(task, keys...); err != nil {
				return nil, nil, err
			}
		}
		out := make([]sdk.Record, 0, len(in))
		for _, r := range in {
			f := strings.Fields(string(r.Value))
			ts := st.Task(r.Partition)
			res := "ok"
			var err error
			switch f[0] {
			case "put":
				err = ts.Put(f[1], []byte(f[2]))
			case "get":
				var v []byte
				var ok bool
				if v, ok, err = ts.Get(f[1]); !ok {
					res = "<none>"
				} else {
					res = string(v)
				}
			case "del":
				err = ts.Delete(f[1])
			case "scan":
				prefix := ""
				if len(f) > 1 {
					prefix = f[1]
				}
				var kv []string
				err = ts.Scan(prefix, func(k string, v []byte) bool {
					if len(v) > 16 {
						v = []byte(fmt.Sprintf("%d bytes", len(v)))
					}
					kv = append(kv, k+"="+string(v))
					return true
				})
				res = strings.Join(kv, " ")
			case "incr", "count":
				var v []byte
				if v, _, err = ts.Get(f[1]); err == nil {
					var n int
					fmt.Sscan(string(v), &n)
					res = fmt.Sprint(n + 1)
					err = ts.Put(f[1], []byte(res))
				}
			case "fill": // fill PREFIX N: N values of 200 KiB
				var n int
				fmt.Sscan(f[2], &n)
				for i := range n {
					if err = ts.Put(fmt.Sprintf("%s%03d", f[1], i), make([]byte, 200<<10)); err != nil {
						break
					}
				}
			case "prefetch":
				err = ts.Prefetch(f[1:]...)
			case "fail":
				return nil, nil, errors.New("failed on purpose")
			case "crash":
				os.Exit(3)
			case "other-task":
				err = st.Put(r.Partition+1000, "k", []byte("v"))
			case "big-ignored":
				_ = ts.Put("big", make([]byte, sdk.MaxStateValueBytes+1))
			}
			if err != nil {
				return nil, nil, err
			}
			r.Value = []byte(res)
			out = append(out, r)
		}
		return out, nil, nil
	})
}

// badStateServer is the state plugin with a bug the SDK would not let it
// have: a record "bad-task", "bad-key", "bad-value" or "bad-encoding"
// makes the answer carry such state writes, for the host to refuse.
type badStateServer struct {
	pluginpb.TransformServer
}

func (b badStateServer) UseBroker(br *plugin.GRPCBroker) {
	b.TransformServer.(pluginpb.BrokerUser).UseBroker(br)
}

func (b badStateServer) Process(ctx context.Context, req *pluginpb.ProcessRequest) (*pluginpb.ProcessResponse, error) {
	in, err := wire.Decode(req.GetRecords())
	if err != nil || len(in) == 0 {
		return b.TransformServer.Process(ctx, req)
	}
	var w wire.Write
	switch string(in[0].Value) {
	case "bad-task":
		w = wire.Write{Task: in[0].Partition + 7, Key: []byte("k"), Value: []byte("v")}
	case "bad-key":
		w = wire.Write{Task: in[0].Partition, Key: make([]byte, pluginpb.MaxStateKeyBytes+1), Value: []byte("v")}
	case "bad-value":
		w = wire.Write{Task: in[0].Partition, Key: []byte("k"), Value: make([]byte, pluginpb.MaxStateValueBytes+1)}
	case "bad-encoding":
		return &pluginpb.ProcessResponse{StateWrites: []byte{5, 1}}, nil
	default:
		return b.TransformServer.Process(ctx, req)
	}
	// A good write first: a bad answer must apply none of its writes.
	good := wire.Write{Task: in[0].Partition, Key: []byte("good"), Value: []byte("v")}
	buf := wire.AppendWrite(wire.AppendWrite(wire.AppendWriteCount(nil, 2), good), w)
	return &pluginpb.ProcessResponse{Records: wire.Append(nil, in), StateWrites: buf}, nil
}

func serveBadStatePlugin() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         plugin.PluginSet{pluginpb.PluginName: &pluginpb.GoPlugin{Impl: badStateServer{sdk.NewServer(testStatePlugin())}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, pluginpb.ServerOptions()...)...)
		},
	})
}
