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
	// Replace given explicitly; without Tidy nothing is resolved.
	if _, err := New(Options{Name: "p", Dir: dir, Replace: "/src/sluice"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"module p\n", "require github.com/sluicehq/sluice v0.0.0", "replace github.com/sluicehq/sluice => /src/sluice"} {
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
