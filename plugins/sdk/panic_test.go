package sdk

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/plugins/internal/wire"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
)

// A panic in a per-record function rejects that record, with the panic and
// its place as the reason; the records around it go through.
func TestPanicInMapRejectsTheRecord(t *testing.T) {
	var none []int
	bug := func(r Record) (Record, error) {
		if string(r.Value) == "bad" {
			_ = none[len(r.Value)] // index out of range, as a bug would be
		}
		return r, nil
	}
	flat := func(r Record) ([]Record, error) {
		if string(r.Value) == "bad" {
			panic("no pieces")
		}
		return []Record{r, r}, nil
	}
	reason := regexp.MustCompile(`^panic: (runtime error: index out of range \[3\] with length 0|no pieces) \(at panic_test\.go:\d+ in github\.com/sluicehq/sluice/plugins/sdk\.TestPanicInMapRejectsTheRecord\.func\d+\)$`)
	for name, tr := range map[string]Transform{"Map": Map(bug), "FlatMap": FlatMap(flat)} {
		t.Run(name, func(t *testing.T) {
			l, err := Local(context.Background(), tr, "step", nil)
			if err != nil {
				t.Fatal(err)
			}
			out, rej, err := l.Process(context.Background(), []Record{{Value: []byte("a")}, {Value: []byte("bad")}, {Value: []byte("b")}})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(values(out), ","); got != "a,b" && got != "a,a,b,b" {
				t.Errorf("out %q: the records around the panic are missing", got)
			}
			if len(rej) != 1 || string(rej[0].Record.Value) != "bad" || !reason.MatchString(rej[0].Reason) {
				t.Fatalf("rejected %+v, want the bad record with a reason matching %s", rej, reason)
			}
		})
	}
}

// A panic in a whole-batch Transform fails the batch with one line naming
// it; the plugin process lives on and serves the next call.
func TestPanicInBatchFailsTheBatch(t *testing.T) {
	c := grpcTransform(t, Batch(func(_ context.Context, in []Record) ([]Record, []Rejected, error) {
		if len(in) > 0 && string(in[0].Value) == "bad" {
			panic("batch bug")
		}
		return in, nil, nil
	}))
	ctx := context.Background()
	if _, err := c.Configure(ctx, &pluginpb.ConfigureRequest{Step: "s"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Process(ctx, &pluginpb.ProcessRequest{Records: wire.Append(nil, []Record{{Value: []byte("bad")}})})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "panic: batch bug (at panic_test.go:") {
		t.Fatalf("err %v, want FailedPrecondition naming the panic and its place", err)
	}
	resp, err := c.Process(ctx, &pluginpb.ProcessRequest{Records: wire.Append(nil, []Record{{Value: []byte("good")}})})
	if err != nil {
		t.Fatalf("the call after the panic: %v", err)
	}
	if out, _ := wire.Decode(resp.Records); len(out) != 1 || string(out[0].Value) != "good" {
		t.Fatalf("the call after the panic returned %v", out)
	}
}
