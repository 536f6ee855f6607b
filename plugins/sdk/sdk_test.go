package sdk

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/internal/wire"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
)

type prefixSettings struct {
	Prefix string `json:"prefix"`
	Max    int    `json:"max"`
}

// prefixer prepends a prefix, rejects values longer than Max, and fails the
// batch on "fail" (retryably on "retry").
func prefixer() Transform {
	return WithSettings(func(s prefixSettings) (Transform, error) {
		if s.Max <= 0 {
			return nil, errors.New("max must be positive")
		}
		return Map(func(r Record) (Record, error) {
			switch string(r.Value) {
			case "fail":
				return r, FailBatch(errors.New("lookup service down"))
			case "retry":
				return r, FailBatch(Retryable(errors.New("try later")))
			}
			if len(r.Value) > s.Max {
				return r, errors.New("value too long")
			}
			r.Value = append([]byte(s.Prefix), r.Value...)
			return r, nil
		}), nil
	})
}

// grpcTransform serves t over an in-memory gRPC connection.
func grpcTransform(t *testing.T, tr Transform) pluginpb.TransformClient {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, true, map[string]plugin.Plugin{
		pluginpb.PluginName: &pluginpb.GoPlugin{Impl: NewServer(tr)},
	})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(pluginpb.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(pluginpb.TransformClient)
}

func TestServerOverGRPC(t *testing.T) {
	ctx := context.Background()
	c := grpcTransform(t, prefixer())
	if _, err := c.Configure(ctx, &pluginpb.ConfigureRequest{SettingsJson: []byte(`{"prefix":"p-","max":3}`), Step: "s"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		values   []string
		want     []string
		rejected []string
		code     codes.Code
	}{
		{"maps", []string{"a", "bc"}, []string{"p-a", "p-bc"}, nil, codes.OK},
		{"rejects one", []string{"a", "toolong", "b"}, []string{"p-a", "p-b"}, []string{"toolong"}, codes.OK},
		{"empty batch", nil, nil, nil, codes.OK},
		{"fails batch", []string{"a", "fail"}, nil, nil, codes.FailedPrecondition},
		{"retryable batch failure", []string{"retry"}, nil, nil, codes.Aborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make([]Record, len(tt.values))
			for i, v := range tt.values {
				in[i] = Record{Topic: "t", Offset: int64(i), Value: []byte(v)}
			}
			resp, err := c.Process(ctx, &pluginpb.ProcessRequest{Records: wire.Append(nil, in)})
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code %v (%v), want %v", got, err, tt.code)
			}
			if err != nil {
				return
			}
			out, err := wire.Decode(resp.Records)
			if err != nil {
				t.Fatal(err)
			}
			if got := values(out); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("out %q, want %q", got, tt.want)
			}
			rej, err := wire.Decode(resp.Rejected)
			if len(resp.Rejected) > 0 && err != nil {
				t.Fatal(err)
			}
			if got := values(rej); strings.Join(got, ",") != strings.Join(tt.rejected, ",") {
				t.Errorf("rejected %q, want %q", got, tt.rejected)
			}
			for _, r := range resp.Reasons {
				if r != "value too long" {
					t.Errorf("reason %q", r)
				}
			}
		})
	}
}

func TestConfigureErrors(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		want     string
	}{
		{"unknown key", `{"prefix":"x","max":1,"colour":"red"}`, `unknown key "colour"; known keys: max, prefix`},
		{"wrong type", `{"max":"three"}`, `max is string, want a whole number`},
		{"builder refuses", `{}`, `max must be positive`},
		{"not an object", `[1]`, `settings`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := grpcTransform(t, prefixer())
			_, err := c.Configure(context.Background(), &pluginpb.ConfigureRequest{SettingsJson: []byte(tt.settings)})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Configure = %v, want InvalidArgument containing %q", err, tt.want)
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	in := []Record{{Value: []byte("a b")}, {Value: []byte("")}, {Value: []byte("bad")}}
	tests := []struct {
		name     string
		tr       Transform
		want     []string
		rejected int
	}{
		{"map", Map(func(r Record) (Record, error) { r.Value = bytes.ToUpper(r.Value); return r, nil }), []string{"A B", "", "BAD"}, 0},
		{"filter", Filter(func(r Record) (bool, error) { return len(r.Value) > 0, nil }), []string{"a b", "bad"}, 0},
		{"flatmap", FlatMap(func(r Record) ([]Record, error) {
			if string(r.Value) == "bad" {
				return nil, errors.New("bad record")
			}
			var out []Record
			for _, f := range bytes.Fields(r.Value) {
				out = append(out, Record{Value: f})
			}
			return out, nil
		}), []string{"a", "b"}, 1},
		{"batch", Batch(func(_ context.Context, in []Record) ([]Record, []Rejected, error) {
			return in[:1], nil, nil
		}), []string{"a b"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt, err := Local(context.Background(), tt.tr, "step", nil)
			if err != nil {
				t.Fatal(err)
			}
			out, rej, err := lt.Process(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if got := values(out); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("out %q, want %q", got, tt.want)
			}
			if len(rej) != tt.rejected {
				t.Errorf("%d rejected, want %d", len(rej), tt.rejected)
			}
			for _, r := range rej {
				if r.Plugin != "step" || r.Reason == "" {
					t.Errorf("rejected %+v lacks plugin or reason", r)
				}
			}
		})
	}
}

// In-process, a retryable failure reaches the engine as one.
func TestLocalRetryableIsTheEngines(t *testing.T) {
	lt, err := Local(context.Background(), prefixer(), "step", map[string]any{"max": 3})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = lt.Process(context.Background(), []Record{{Value: []byte("retry")}})
	if !engine.IsRetryable(err) {
		t.Fatalf("err = %v, want one the engine retries", err)
	}
	var _ engine.Transform = lt // the engine runs what Local returns
}

// A plugin binary links the SDK: it must not pull in the engine (and with
// it the runtime and Prometheus).
func TestSDKDoesNotImportTheEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/sluicehq/sluice/engine" || strings.HasPrefix(dep, "github.com/prometheus/") {
			t.Errorf("plugins/sdk depends on %s; keep what plugins need in plugins/proto or internal/record", dep)
		}
	}
}

func TestLoggerWritesHCLogJSON(t *testing.T) {
	var b bytes.Buffer
	l := newJSONLogger(&b)
	l.Warn("hello", "n", 1)
	for _, want := range []string{`"@level":"warn"`, `"@message":"hello"`, `"@timestamp":`, `"n":1`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("log line %s lacks %s", b.String(), want)
		}
	}
}

func values(recs []Record) []string {
	var vs []string
	for _, r := range recs {
		vs = append(vs, string(r.Value))
	}
	return vs
}
