package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// filledDir is a data directory, closed cleanly, with two topics of two
// partitions each holding one record per partition, and a producer id
// allocated.
func filledDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	cl := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, topic := range []string{"a", "b"} {
		createTopic(t, cl, topic, 2)
		for p := range int32(2) {
			if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	cl.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openFilesUnder lists the files under dir that this process has open.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open files: %v", err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, target)
		}
	}
	return open
}

// An Open that fails part of the way, after some partitions and stores are
// open, closes them all and releases the directory lock: nothing under the
// directory stays open, and once the fault is gone the next Open succeeds
// with the data intact.
func TestFailedOpenLeavesNothingOpen(t *testing.T) {
	for _, c := range []struct {
		what string
		// path gets a file of garbage where Open expects a directory, a
		// segment or a number; want is in the error it causes.
		path, want string
	}{
		// Topic a and partition 0 of b are open when partition 1 of b fails.
		{"damaged partition", filepath.Join("topics", "b", "1", "stray.log"), "topic b partition 1"},
		// The topics are open when the transaction state fails.
		{"unreadable transaction state", txnsDir, "open transaction state"},
		// The topics and the transaction state are open when the producer
		// id allocation fails.
		{"unreadable producer id allocation", producerIDsFile, "producer id allocation"},
		// Everything but the committed offsets is open when they fail.
		{"unreadable committed offsets", groupsDir, "open committed offsets"},
	} {
		t.Run(c.what, func(t *testing.T) {
			dir := filledDir(t)
			path := filepath.Join(dir, c.path)
			if err := os.RemoveAll(path); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := Open(dir, Options{Logger: testLogger(t)}); err == nil || !strings.Contains(err.Error(), c.want) {
				if err == nil {
					b.Close()
				}
				t.Fatalf("Open of the damaged directory: %v, want an error about %q", err, c.want)
			}
			if open := openFilesUnder(t, dir); len(open) > 0 {
				t.Fatalf("the failed Open left files open: %v", open)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			b, err := Open(dir, Options{Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("Open after a failed one: %v", err)
			}
			defer b.Close()
			for _, topic := range []string{"a", "b"} {
				for p := range int32(2) {
					if end := b.topics.partition(topic, p).EndOffset(); end != 1 {
						t.Errorf("%s/%d ends at %d after reopening, want 1", topic, p, end)
					}
				}
			}
		})
	}
}

// A second broker on a directory in use fails without disturbing the
// first, and the directory opens again once the first closes. A port in
// use fails Listen, not Open, and leaves the broker as it was.
func TestOpenConflicts(t *testing.T) {
	dir := t.TempDir()
	first, addr := testBrokerDir(t, dir, Options{})
	if _, err := Open(dir, Options{Logger: testLogger(t)}); err == nil || !strings.Contains(err.Error(), "in use by another broker") {
		t.Fatalf("second Open of a directory in use: %v, want the in-use error", err)
	}
	if _, err := first.Listen(addr, nil); err == nil {
		t.Fatal("Listen on a port in use succeeded")
	}
	if got := first.Addr(); got != addr {
		t.Fatalf("after a failed Listen the broker serves %q, want %q", got, addr)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if open := openFilesUnder(t, dir); len(open) > 0 {
		t.Fatalf("Close left files open: %v", open)
	}
	b, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open after the first broker closed: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
