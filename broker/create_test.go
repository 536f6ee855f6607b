package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// createWith creates a topic with kadm and returns its error (nil on
// success) and the broker's message.
func createWith(t *testing.T, adm *kadm.Client, name string, partitions int32) (error, string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctxT(t), partitions, 1, nil, name)
	if err != nil && resp.Err == nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return resp.Err, resp.ErrMessage
}

// assertNoTopic checks the topic is neither listed nor on disk, and that
// no half-built directory is left in the data directory.
func assertNoTopic(t *testing.T, adm *kadm.Client, dir, name string) {
	t.Helper()
	topics, err := adm.ListTopics(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(name) {
		t.Fatalf("topic %s is listed after its creation failed", name)
	}
	if _, err := os.Stat(filepath.Join(dir, "topics", name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("topic %s left a directory behind: %v", name, err)
	}
	left, _ := os.ReadDir(filepath.Join(dir, "trash"))
	if len(left) > 0 {
		t.Fatalf("the failed creation left %s in the trash", left[0].Name())
	}
}

// The probe: a CreateTopics that fails part-way (here partition 5
// of 10 fails to open as when descriptors run out) left a directory that
// was not listed, could not be created again and came back after a
// restart. Now nothing is left, the same topic is created at once, and it
// is whole after a restart.
func TestFailedCreateLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	adm := kadm.NewClient(newKgo(t, addr))

	testHookOpenPartition = func(name string, i int32) error {
		if name == "half" && i == 5 {
			return &os.PathError{Op: "open", Path: "00000000000000000000.log", Err: syscall.EMFILE}
		}
		return nil
	}
	err, msg := createWith(t, adm, "half", 10)
	testHookOpenPartition = nil
	if err == nil {
		t.Fatal("creation succeeded though partition 5 failed to open")
	}
	if !strings.Contains(msg, "open-file limit") || !strings.Contains(msg, "nothing was kept") {
		t.Fatalf("message %q does not say the open-file limit was hit and nothing was kept", msg)
	}
	assertNoTopic(t, adm, dir, "half")

	if err, msg := createWith(t, adm, "half", 10); err != nil {
		t.Fatalf("creating the topic again: %v: %s", err, msg)
	}
	produceAndConsume(t, addr, "half", 20)

	// Whole after a restart.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, addr = testBrokerDir(t, dir, Options{})
	adm = kadm.NewClient(newKgo(t, addr))
	details, err := adm.ListTopics(ctxT(t), "half")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["half"].Partitions); n != 10 {
		t.Fatalf("after a restart the topic has %d partitions, want 10", n)
	}
}

// Partitions are bounded per broker before anything is created.
func TestPartitionLimitIsCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	_, addr := testBrokerDir(t, dir, Options{MaxPartitions: 20})
	adm := kadm.NewClient(newKgo(t, addr))
	if err, msg := createWith(t, adm, "first", 15); err != nil {
		t.Fatalf("%v: %s", err, msg)
	}
	err, msg := createWith(t, adm, "second", 10)
	if !errors.Is(err, kerr.PolicyViolation) || !strings.Contains(msg, "limit of 20") {
		t.Fatalf("over the broker's partition limit: %v %q, want POLICY_VIOLATION naming the limit", err, msg)
	}
	assertNoTopic(t, adm, dir, "second")
	err, msg = createWith(t, adm, "huge", MaxPartitionsPerTopic+1)
	if !errors.Is(err, kerr.InvalidPartitions) || !strings.Contains(msg, "per-topic limit") {
		t.Fatalf("over the per-topic limit: %v %q, want INVALID_PARTITIONS", err, msg)
	}
	if err, msg := createWith(t, adm, "second", 5); err != nil {
		t.Fatalf("within the limit: %v: %s", err, msg)
	}
}

// In a broker process with a low open-file limit, the 10,000
// partitions are refused before anything is created, with a message
// naming the limit, and the broker goes on serving.
func TestPartitionsBoundedByFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	dir := t.TempDir()
	addr, _ := startChild(t, dir, crashNofileEnv+"=256")
	adm := kadm.NewClient(newKgo(t, addr))
	err, msg := createWith(t, adm, "wide", MaxPartitionsPerTopic)
	if !errors.Is(err, kerr.PolicyViolation) || !strings.Contains(msg, "ulimit -n") {
		t.Fatalf("10,000 partitions under a 256-file limit: %v %q, want POLICY_VIOLATION saying to raise ulimit -n", err, msg)
	}
	assertNoTopic(t, adm, dir, "wide")
	if err, msg := createWith(t, adm, "narrow", 20); err != nil {
		t.Fatalf("20 partitions under a 256-file limit: %v: %s", err, msg)
	}
	produceAndConsume(t, addr, "narrow", 20)
}

// A broker killed while creating a topic restarts cleanly, with the topic
// whole or absent, and leftovers of a creation killed earlier (a
// half-built directory in the trash) are removed.
func TestCrashMidCreateRestartsClean(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	dir := t.TempDir()
	addr, cmd := startChild(t, dir, crashCreateEnv+"=killed:7")
	cl := newKgo(t, addr, kgo.RequestRetries(0))
	if resp, err := kadm.NewClient(cl).CreateTopic(ctxT(t), 12, 1, nil, "killed"); err == nil && resp.Err == nil {
		t.Fatal("creation answered though the broker was killed during it")
	}
	cmd.Wait()
	cl.Close()
	// As if killed while building: a temporary directory with some of it.
	leftover := filepath.Join(dir, "trash", "create-123")
	if err := os.MkdirAll(filepath.Join(leftover, "3"), 0o755); err != nil {
		t.Fatal(err)
	}

	_, addr = testBrokerDir(t, dir, Options{})
	adm := kadm.NewClient(newKgo(t, addr))
	details, err := adm.ListTopics(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := details["killed"]; ok {
		if n := len(d.Partitions); n != 12 {
			t.Fatalf("after the crash the topic has %d partitions, want 12 or none", n)
		}
	} else if err, msg := createWith(t, adm, "killed", 12); err != nil {
		t.Fatalf("creating the topic after the restart: %v: %s", err, msg)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover of an interrupted creation still there: %v", err)
	}
	produceAndConsume(t, addr, "killed", 24)
}

// The probe: running out of file descriptors locked out new
// clients. In a broker process with a 256-file limit, a flood of
// connections is cut at the connection limit derived from it, so the
// broker keeps descriptors for what it must do: the client connected
// before the flood produces and consumes, and topics can still be created.
func TestConnectionFloodLeavesDescriptors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	const nofile = 256
	addr, _ := startChild(t, t.TempDir(), crashNofileEnv+"=256")
	cl := newKgo(t, addr)
	adm := kadm.NewClient(cl)
	if err, msg := createWith(t, adm, "before", 4); err != nil {
		t.Fatalf("%v: %s", err, msg)
	}
	prod := newKgo(t, addr, kgo.DefaultProduceTopic("before"))
	if err := prod.ProduceSync(ctxT(t), kgo.StringRecord("warm")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	answered := 0
	for i := range nofile {
		if dialRawFrom(t, "127.0.0.5", addr).answered() {
			answered++
		} else if i < 10 {
			t.Fatalf("connection %d refused; the limit should leave room for more", i+1)
		}
	}
	if answered >= nofile-fdReserve {
		t.Fatalf("%d of %d flood connections accepted under a %d-file limit: nothing is kept for partitions", answered, nofile, nofile)
	}
	t.Logf("%d of %d flood connections accepted", answered, nofile)
	if err := prod.ProduceSync(ctxT(t), kgo.StringRecord("during the flood")).FirstErr(); err != nil {
		t.Fatalf("connected client not served during the flood: %v", err)
	}
	if err, msg := createWith(t, adm, "during", 8); err != nil {
		t.Fatalf("creating a topic during the flood: %v: %s", err, msg)
	}
}
