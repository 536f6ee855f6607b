package pipelines_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sources/kafka"
)

// Relative paths in a pipeline file are taken from the file's folder, as
// plugin: always was, whatever the current directory; absolute paths, and
// every path of a file in the current directory, stay as written.
func TestPathsRelativeToThePipelineFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pipes")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte(`version: 1
name: p
source:
  kafka: {brokers: ["k:9092"], topics: [t], tls: {ca: certs/ca.pem, cert: /etc/c.pem}}
sink:
  file: {path: ./out}
dead-letter: {file: ../dlq}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := components.Builtin.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	k := spec.Source.Config.(*kafka.Settings)
	for _, c := range []struct{ got, want string }{
		{spec.Sink.Config.(*file.Config).Path, filepath.Join(dir, "out")},
		{spec.DeadLetter.File, filepath.Join(filepath.Dir(dir), "dlq")},
		{k.TLS.CA, filepath.Join(dir, "certs", "ca.pem")},
		{k.TLS.Cert, "/etc/c.pem"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}

	here, err := components.Builtin.Parse("p.yaml", []byte("version: 1\nname: p\nsource: {generate: {}}\nsink: {file: {path: ./out}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := here.Sink.Config.(*file.Config).Path; got != "./out" {
		t.Errorf("a file in the current directory: path %s, want ./out as written", got)
	}
}
