package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// artifactsEnv names the directory the browser test writes its screenshot
// into (CI keeps it); unset, the test's temporary directory.
const artifactsEnv = "SLUICE_TEST_ARTIFACTS"

// browserTimeout bounds everything the browser does in the test: a cold
// headless Chromium starts in a few seconds on a loaded 2-core machine.
const browserTimeout = 60 * time.Second

// chromium finds Debian's chromium, or says why the test cannot run:
// skipped on a developer's machine, a failure under CI.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "no chromium on PATH: install it (apt-get install chromium) to run the status page's browser test"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so the test must run")
	}
	t.Skip(msg)
	return ""
}

// TestStatusPageInBrowser loads the status page of a real `sluice daemon`
// in headless Chromium: the pipelines' names show, the numbers of a
// running one change without a reload (the page's script polls the API),
// the script draws a Kafka pipeline's lag per partition and plugin
// process, and a screenshot is written as a test artefact.
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromium(t)
	dir := t.TempDir()
	pdir := filepath.Join(dir, "pipelines")
	os.MkdirAll(pdir, 0o755)
	for name, rate := range map[string]int{"clicks": 400, "orders": 0} {
		count := 1_000_000
		if rate == 0 {
			count = 500 // done at once: its numbers stay
		}
		spec := fmt.Sprintf(`version: 1
name: %s
source:
  generate: {count: %d, partitions: 2, rate: %d}
batch: {interval: 50ms}
sink:
  file: {path: %s, format: raw}
`, name, count, rate, filepath.Join(dir, "out", name))
		if err := os.WriteFile(filepath.Join(pdir, name+".yaml"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A Kafka pipeline through a plugin, for the lag per partition and
	// the plugin process.
	const words, partitions = 200, 2
	spec := fmt.Sprintf(`version: 1
name: shout
source:
  kafka: {brokers: [builtin], topics: [words]}
batch: {interval: 50ms}
transforms:
  - plugin: uppercase
sink:
  file: {path: %s, format: raw}
`, filepath.Join(dir, "out", "shout"))
	if err := os.WriteFile(filepath.Join(pdir, "shout.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr, brokerAddr := freeAddr(t), freeAddr(t)
	cmd := sluice(t, "daemon", "--pipelines", pdir, "--data", filepath.Join(dir, "data"),
		"--broker-listen", brokerAddr, "--http", httpAddr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	waitForBroker(t, brokerAddr)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.DefaultProduceTopic("words"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "words", partitions)
	var recs []*kgo.Record
	for i := range words {
		recs = append(recs, &kgo.Record{Value: []byte("word" + strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpAddr + "/"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon at %s never became ready: %v", httpAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The timeout is on the allocator: when it fires the browser stops
	// and every action fails.
	tctx, cancelTimeout := context.WithTimeout(context.Background(), browserTimeout)
	defer cancelTimeout()
	actx, cancelAlloc := chromedp.NewExecAllocator(tctx,
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 800))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	const clicksIn = chromedp.CSS(`section.pipeline[data-name="clicks"] [data-field="records_in"]`)
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel, chromedp.NodeVisible))
		if err != nil {
			t.Fatalf("reading %s on the status page: %v", sel, err)
		}
		return s
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base)); err != nil {
		t.Fatalf("loading %s in Chromium: %v", base, err)
	}
	if name := text(`section.pipeline[data-name="orders"] h2 .name`); name != "orders" {
		t.Fatalf("the page shows pipeline %q, want orders", name)
	}
	first, updated1 := text(clicksIn), text("#updated")
	// Wait, in the same document, until the script has redrawn the number:
	// the page is not reloaded, so only the script can change it.
	changed := fmt.Sprintf(`document.querySelector(%s).textContent !== %s`, strconv.Quote(string(clicksIn)), strconv.Quote(first))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](changed, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		t.Fatalf("the records-in number of clicks never changed from %s: %v", first, err)
	}
	second, updated2 := text(clicksIn), text("#updated")
	// From here the script has redrawn the page: the Kafka pipeline's lag
	// table and plugin process are its rendering.
	const shout = `section.pipeline[data-name="shout"]`
	caughtUp := fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll(%[1]q)];
		const out = document.querySelector(%[2]q);
		return rows.length === %[3]d && rows.every((r) => r.lastElementChild.textContent === "0") && out && out.textContent === "%[4]d";
	})()`, shout+" table.lag tbody tr", shout+` [data-field="records_out"]`, partitions, words)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](caughtUp, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		t.Fatalf("the page never showed shout caught up on %d partitions with %d records out: %v", partitions, words, err)
	}
	if plugin := text(shout + " .plugins li"); !regexp.MustCompile(`^uppercase#1 pid [1-9][0-9]*$`).MatchString(plugin) {
		t.Fatalf("shout's plugin process shows as %q, want uppercase#1 pid N", plugin)
	}
	a, errA := strconv.ParseUint(first, 10, 64)
	b, errB := strconv.ParseUint(second, 10, 64)
	if errA != nil || errB != nil || b <= a {
		t.Fatalf("records in went from %q to %q: want a growing count", first, second)
	}
	if updated1 == "" || updated2 == "" {
		t.Fatalf("the page shows no update time: %q, %q", updated1, updated2)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv(artifactsEnv)
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(out, "status-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("status page screenshot: %s (records in of clicks: %s, then %s)", shot, first, second)
}
