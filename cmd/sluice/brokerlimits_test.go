package main

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The embedded broker's limits come from the same flags as sluice
// broker's, prefixed broker-: with --broker-max-connections 1 the daemon's
// broker serves one connection and closes a second at once, and takes a
// new one when the first is gone.
func TestDaemonBrokerLimitFlags(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "pipelines")
	os.MkdirAll(pdir, 0o755)
	addr := freeAddr(t)
	cmd := sluice(t, "daemon", "--pipelines", pdir, "--data", filepath.Join(dir, "data"),
		"--broker-listen", addr, "--http", "127.0.0.1:0", "--broker-max-connections", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForBroker(t, addr)

	// waitForBroker's connection may still be counted until the broker
	// reads its close: retry until one is served.
	var first net.Conn
	deadline := time.Now().Add(30 * time.Second)
	for first == nil {
		c, ok := dialAnswered(t, addr)
		if ok {
			first = c
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the daemon's broker serves no connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
	second, ok := dialAnswered(t, addr)
	second.Close()
	if ok {
		t.Fatal("a second connection was served with --broker-max-connections 1: the flag did not reach the embedded broker")
	}
	// The first is still served, and once it is closed its slot is taken.
	if !answers(t, first) {
		t.Fatal("the connection within the limit is no longer served")
	}
	first.Close()
	for {
		c, ok := dialAnswered(t, addr)
		c.Close()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a freed connection slot was not taken again")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialAnswered connects to a Kafka broker and says whether it answers an
// ApiVersions request on that connection.
func dialAnswered(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c, answers(t, c)
}

// answers sends ApiVersions v0 on c and says whether a response came back
// (false when the broker closed the connection).
func answers(t *testing.T, c net.Conn) bool {
	t.Helper()
	// Request header v1: api key, version, correlation id, client id.
	req := binary.BigEndian.AppendUint16(nil, uint16(kmsg.ApiVersions))
	req = binary.BigEndian.AppendUint16(req, 0)
	req = binary.BigEndian.AppendUint32(req, 7)
	req = binary.BigEndian.AppendUint16(req, 0xffff) // null client id
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(req)))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(frame, req...)); err != nil {
		return false
	}
	var head [8]byte // size, correlation id
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return false
	}
	if id := binary.BigEndian.Uint32(head[4:]); id != 7 {
		t.Fatalf("ApiVersions answered with correlation id %d, want 7", id)
	}
	size := int64(binary.BigEndian.Uint32(head[:4])) - 4
	if _, err := io.CopyN(io.Discard, c, size); err != nil {
		return false
	}
	return true
}

// sluice run's embedded broker takes them too: --broker-max-partitions 2
// refuses a topic of 3 partitions, and the refusal names that flag, not
// sluice broker's --max-partitions.
func TestRunBrokerLimitFlags(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	// The pipeline's builtin source starts the broker; its topic is never
	// created, so the run waits.
	spec := kafkaPipeline(t, dir, "builtin", "absent", "direct")
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--broker-listen", addr, "--broker-max-partitions", "2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForBroker(t, addr)
	out, err := runTool(t, addr, "", "topic", "create", "wide", "--partitions", "3")
	if err == nil || !strings.Contains(err.Error(), "over its limit of 2 (--broker-max-partitions;") {
		t.Fatalf("topic create of 3 partitions under --broker-max-partitions 2: %v %s", err, out)
	}
	if out, err := runTool(t, addr, "", "topic", "create", "narrow", "--partitions", "2"); err != nil {
		t.Fatalf("topic create within the limit: %v %s", err, out)
	}
}
