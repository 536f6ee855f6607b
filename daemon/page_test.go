package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/plugins/builtin"
)

// The test binary doubles as the built-in plugin process the page's
// Kafka pipeline runs (the host re-executes it as it does sluice).
func TestMain(m *testing.M) {
	builtin.MaybeServe()
	os.Exit(m.Run())
}

// field returns the number the page shows in pipeline name's data-field.
func field(t *testing.T, html, name, f string) float64 {
	t.Helper()
	sec := regexp.MustCompile(`(?s)<section class="pipeline" data-name="` + regexp.QuoteMeta(name) + `">.*?</section>`).FindString(html)
	m := regexp.MustCompile(`data-field="` + f + `">([0-9.]+)<`).FindStringSubmatch(sec)
	if m == nil {
		t.Fatalf("the page shows no number for %s of %s:\n%s", f, name, sec)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestStatusPage reads the page as a client without JavaScript would:
// every pipeline with its numbers, lag per partition, tasks and plugin
// processes, in the first response; and the page's inline script is the
// one its Content-Security-Policy allows.
func TestStatusPage(t *testing.T) {
	const partitions, records = 2, 300
	td := startDaemon(t)
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(td.d.BrokerAddr()), kgo.DefaultProduceTopic("ev"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, "ev"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Value: []byte("v" + strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	td.write("k.yaml", fmt.Sprintf(`version: 1
name: kafka-up
source:
  kafka: {brokers: [builtin], topics: [ev], session-timeout: 6s}
batch: {interval: 20ms}
transforms:
  - plugin: uppercase
sink:
  file: {path: %s/kafka-up, format: raw, roll: {per-epoch: true}}
`, td.out))
	// A steady 2000 records/s for long enough to show a rate.
	td.write("g.yaml", pipelineYAML("gen", td.out, 1_000_000, 2000))
	td.write("broken.yaml", "version: 1\nname: broken\nsource: {generat: {}}\nsink: {file: {path: x}}\n")

	td.waitFor("kafka-up caught up with its plugin running", func() bool {
		in := td.info("kafka-up")
		if in.RecordsOut != records || len(in.Lag) != partitions || len(in.Plugins) != 1 || in.Plugins[0].PIDs[0] == 0 {
			return false
		}
		for _, l := range in.Lag {
			if l.Lag == nil || *l.Lag != 0 {
				return false
			}
		}
		return true
	})
	td.waitFor("gen shows a rate", func() bool { in := td.info("gen"); return in.InPerSec > 0 && in.OutPerSec > 0 })

	resp, err := http.Get(td.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_, err = copyBody(&b, resp)
	if err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`data-name="kafka-up"`, `data-name="gen"`, `data-name="broken"`, `state-invalid`,
		`<td>ev</td><td>0</td><td>150</td><td>150</td><td>0</td>`, // topic, partition, position, end, lag
		`<td>ev</td><td>1</td><td>150</td><td>150</td><td>0</td>`,
		`tasks this process runs`,
		`<noscript><meta http-equiv="refresh" content="5"></noscript>`, // without JavaScript it reloads
		`<span class="plugin">uppercase#1</span> pid `,
		`unknown key &#34;generat&#34; in source`, // the invalid file's error, escaped
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if v := field(t, page, "kafka-up", "records_out"); v != records {
		t.Errorf("kafka-up shows %v records out, want %d", v, records)
	}
	if v := field(t, page, "gen", "in_per_sec"); v <= 0 {
		t.Errorf("gen shows %v records/s in, want more than 0", v)
	}
	if v := field(t, page, "kafka-up", "epoch"); v < 1 {
		t.Errorf("kafka-up shows epoch %v", v)
	}

	// The inline script and style are what the CSP allows, by hash.
	csp := resp.Header.Get("Content-Security-Policy")
	script := regexp.MustCompile(`(?s)<script>(.*)</script>`).FindStringSubmatch(page)
	style := regexp.MustCompile(`(?s)<style>(.*)</style>`).FindStringSubmatch(page)
	if script == nil || style == nil || !strings.Contains(csp, "'"+hashSource(script[1])+"'") || !strings.Contains(csp, "'"+hashSource(style[1])+"'") {
		t.Fatalf("the inline script or style does not match the page's CSP %q", csp)
	}
}

func copyBody(b *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	return io.Copy(b, resp.Body)
}

// TestAPIErrorsAreJSON: what the mux answers by itself (no route, a
// method the route does not take) is JSON like every other error.
func TestAPIErrorsAreJSON(t *testing.T) {
	td := startDaemon(t)
	auth := map[string]string{"Authorization": "Bearer " + td.token}
	for _, c := range []struct {
		method, path string
		code         int
		allow, msg   string
	}{
		{"POST", "/pipelines", 405, "GET, HEAD", "POST is not allowed on /pipelines: use GET or HEAD"},
		{"PUT", "/pipelines/x", 405, "DELETE, GET, HEAD", "PUT is not allowed on /pipelines/x"},
		{"GET", "/pipelines/x/pause", 405, "POST", "use POST"},
		{"GET", "/nothing-here", 404, "", "no endpoint /nothing-here"},
		{"POST", "/pipelines/x/bogus", 404, "", "no endpoint /pipelines/x/bogus"},
	} {
		code, body, err := td.do(c.method, c.path, "", auth)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		if code != c.code || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, c.msg) {
			t.Errorf("%s %s: %d %q, want %d with a JSON error saying %q", c.method, c.path, code, body, c.code, c.msg)
		}
	}
	req, _ := http.NewRequest("POST", td.base+"/pipelines", nil)
	req.Header.Set("Authorization", "Bearer "+td.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Allow"); got != "GET, HEAD" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("405: Allow %q, Content-Type %q", got, resp.Header.Get("Content-Type"))
	}
}

func TestLoopbackByDefault(t *testing.T) {
	for in, want := range map[string]string{
		"8080":           "127.0.0.1:8080",
		":8080":          "127.0.0.1:8080",
		"0.0.0.0:8080":   "0.0.0.0:8080",
		"[::1]:8080":     "[::1]:8080",
		"example.org:80": "example.org:80",
	} {
		if got := LoopbackByDefault(in); got != want {
			t.Errorf("LoopbackByDefault(%q) = %q, want %q", in, got, want)
		}
	}
}
