package scaffold

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/host"
)

func TestNewBuildsAndRunsAsPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go module")
	}
	wd, _ := os.Getwd()
	checkout := FindCheckout(wd)
	if checkout == "" {
		t.Fatal("test does not run inside a Sluice checkout")
	}
	dir := filepath.Join(t.TempDir(), "greeter")
	res, err := New(Options{Name: "greeter", Dir: dir, Replace: checkout, Tidy: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Files, ","); got != "main.go,main_test.go,README.md,go.mod,go.sum" {
		t.Errorf("files %s", got)
	}
	for _, args := range [][]string{{"vet", "./..."}, {"test", "./..."}, {"build", "-o", "greeter", "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tr, err := host.New(context.Background(), host.Config{
		Pipeline: "p", Plugin: filepath.Join(dir, "greeter"),
		Settings: map[string]any{"prefix": "hi "},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	out, rej, err := tr.Process(context.Background(), []engine.Record{{Value: []byte("bob")}, {Value: nil}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || string(out[0].Value) != "hi bob" || len(rej) != 1 || rej[0].Reason != "empty value" {
		t.Fatalf("out %v rejected %v", out, rej)
	}
}

func TestNewErrors(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"bad name", Options{Name: "My Plugin"}, "lower-case letters"},
		{"leading digit", Options{Name: "1x"}, "starting with a letter"},
		{"non-empty dir", Options{Name: "x", Dir: full}, "not empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestGoModWithoutCheckout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	checkout := fakeCheckout(t)
	// Replace given explicitly; without Tidy nothing is resolved.
	if _, err := New(Options{Name: "p", Dir: dir, Replace: checkout}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"module p\n", "require github.com/sluicehq/sluice v0.0.0", "replace github.com/sluicehq/sluice => " + checkout} {
		if !strings.Contains(string(b), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, b)
		}
	}
}

func TestFindCheckout(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := FindCheckout(sub); got != "" && strings.HasPrefix(got, root) {
		t.Fatalf("found %s in an empty tree", got)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module "+ModulePath+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := FindCheckout(sub); got != root {
		t.Fatalf("FindCheckout = %q, want %q", got, root)
	}
}

// fakeCheckout is a folder whose go.mod declares the Sluice module and
// that holds nothing else: enough for --replace, not to build against.
func fakeCheckout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+ModulePath+"\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Outside a checkout, plugin new used to write the files and then fail,
// so the retry with --replace found the folder "not empty". It now fails
// before writing anything, and the retry works.
func TestNewOutsideCheckoutWritesNothing(t *testing.T) {
	wd, _ := os.Getwd()
	checkout := FindCheckout(wd)
	if checkout == "" {
		t.Fatal("test does not run inside a Sluice checkout")
	}
	outside := t.TempDir()
	t.Chdir(outside)
	dir := filepath.Join(outside, "reverse")
	_, err := New(Options{Name: "reverse", Dir: dir, Tidy: true})
	if err == nil || !strings.Contains(err.Error(), "give --replace /path/to/sluice") {
		t.Fatalf("err = %v, want one saying to give --replace", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the failed run left %s behind (%v)", dir, err)
	}
	if _, err := New(Options{Name: "reverse", Dir: dir, Replace: checkout}); err != nil {
		t.Fatalf("the retry with --replace: %v", err)
	}
	if _, err := New(Options{Name: "x", Dir: filepath.Join(outside, "x"), Replace: outside}); err == nil ||
		!strings.Contains(err.Error(), "give the folder of a Sluice checkout") {
		t.Fatalf("--replace of a folder that is no checkout: %v", err)
	}
}

// A failure part way (go mod tidy against a checkout it cannot build
// from) removes what New wrote: the folder it made, or the files it put
// into the empty folder it was given.
func TestNewFailureRemovesWhatItWrote(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go mod tidy")
	}
	checkout := fakeCheckout(t)
	made := filepath.Join(t.TempDir(), "made")
	if _, err := New(Options{Name: "p", Dir: made, Replace: checkout, Tidy: true}); err == nil || !strings.Contains(err.Error(), "go mod tidy") {
		t.Fatalf("err = %v, want go mod tidy to fail", err)
	}
	if _, err := os.Stat(made); !os.IsNotExist(err) {
		t.Fatalf("the folder New made is still there (%v)", err)
	}
	given := t.TempDir()
	if _, err := New(Options{Name: "p", Dir: given, Replace: checkout, Tidy: true}); err == nil {
		t.Fatal("go mod tidy did not fail")
	}
	if entries, err := os.ReadDir(given); err != nil || len(entries) != 0 {
		t.Fatalf("the folder given holds %v (%v), want it empty again", entries, err)
	}
}

// The generated README names the binary inside the plugin's folder and
// the step timeout per call, as the pipeline reference does.
func TestGeneratedREADME(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reverse")
	if _, err := New(Options{Name: "reverse", Dir: dir, Replace: fakeCheckout(t)}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"plugin: ./reverse/reverse ", "# timeout: 30s", "per call"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("README.md lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "per batch") {
		t.Errorf("README.md still says the timeout is per batch:\n%s", b)
	}
}
