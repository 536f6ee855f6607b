package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/internal/testpki"
	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// writeUsers writes a --sasl-users file: admin (SCRAM-SHA-512) and pipe
// (SCRAM-SHA-256), with passwords admin-pw and pipe-pw.
func writeUsers(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "users.yaml")
	err := os.WriteFile(path, []byte(`- name: admin
  password: admin-pw
  mechanisms: [SCRAM-SHA-512]
- name: pipe
  password: pipe-pw
  mechanisms: [SCRAM-SHA-256]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunBuiltinBrokerSASLSSL runs a pipeline on brokers: [builtin] whose
// embedded broker has only a SASL_SSL listener: the pipeline's own tls:
// and sasl: blocks get it in, a franz-go producer with SCRAM over TLS
// feeds it, sluice user sets a user on it that kcat (librdkafka's SCRAM)
// logs in as, and every record is written once.
func TestRunBuiltinBrokerSASLSSL(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	users := writeUsers(t, dir)
	addr := freeAddr(t)
	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "p.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf(`version: 1
name: secure
source:
  kafka:
    brokers: [builtin]
    topics: [events]
    tls: {ca: %s}
    sasl: {mechanism: scram-sha-256, username: pipe, password: "${PIPE_PASSWORD}"}
batch: {interval: 50ms}
sink:
  file: {path: %s, format: raw}
`, pki.CA, out)), 0o644)
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "3s",
		// Every other listener off: --broker-tls-cert alone would also open
		// SSL on the default 127.0.0.1:9093, which a test or broker running
		// beside this one may hold (then run exits and nothing listens).
		"--broker-listen", "off", "--broker-tls-listen", "off", "--broker-sasl-ssl-listen", addr,
		"--broker-tls-cert", pki.ServerCert, "--broker-tls-key", pki.ServerKey, "--broker-sasl-users", users)
	cmd.Env = append(cmd.Env, "PIPE_PASSWORD=pipe-pw")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForBroker(t, addr)

	// sluice user against the embedded broker, then kcat as that user.
	admin := []string{"SLUICE_BOOTSTRAP=" + addr, "SLUICE_TLS_CA=" + pki.CA, "SLUICE_SASL_MECHANISM=SCRAM-SHA-512",
		"SLUICE_SASL_USER=admin", "SLUICE_SASL_PASSWORD=admin-pw"}
	if out, err := runToolEnv(t, admin, "carol-pw\n", "user", "set", "carol", "--iterations", "8192"); err != nil || out != "user carol: added SCRAM-SHA-512 credential (8192 iterations)\n" {
		t.Fatalf("sluice user set carol: out %q, err %v", out, err)
	}
	if out, err := runToolEnv(t, admin, "", "user", "list"); err != nil || !strings.Contains(out, "carol  SCRAM-SHA-512  8192") || !strings.Contains(out, "pipe   SCRAM-SHA-256") {
		t.Fatalf("sluice user list: out %q, err %v", out, err)
	}
	t.Run("kcat", func(t *testing.T) {
		kcat, err := exec.LookPath("kcat")
		if err != nil {
			t.Skip("kcat is not installed")
		}
		args := []string{"-b", addr, "-L", "-m", "5", "-X", "security.protocol=SASL_SSL",
			"-X", "ssl.ca.location=" + pki.CA, "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=carol"}
		out, err := exec.Command(kcat, append(args, "-X", "sasl.password=carol-pw")...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "1 brokers") {
			t.Fatalf("kcat as carol: %v\n%s", err, out)
		}
		out, err = exec.Command(kcat, append(args, "-X", "sasl.password=wrong")...).CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "authentication") {
			t.Fatalf("kcat as carol with a wrong password: err %v\n%s", err, out)
		}
	})

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pki.Pool}),
		kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "events", 2)
	var recs []*kgo.Record
	for i := range 500 {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice run: %v\n%s", err, stderr.String())
	}
	checkExactlyOnce(t, filetest.Lines(t, out), 500, true)
	log := stderr.String()
	if !strings.Contains(log, "security=SASL_SSL") || strings.Contains(log, "security=PLAINTEXT") || strings.Contains(log, "security=SSL") {
		t.Fatalf("the embedded broker must listen on SASL_SSL only:\n%s", log)
	}
}

// TestRunBuiltinListenerOff: a pipeline whose blocks pick a listener that
// is off, or with every listener off, fails saying which flag to give.
func TestRunBuiltinListenerOff(t *testing.T) {
	dir := t.TempDir()
	users := writeUsers(t, dir)
	spec := filepath.Join(dir, "p.yaml")
	os.WriteFile(spec, []byte(`version: 1
name: plain
source:
  kafka: {brokers: [builtin], topics: [events]}
sink:
  file: {path: `+filepath.Join(dir, "out")+`}
`), 0o644)
	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--broker-listen", "off", "--broker-sasl-listen", freeAddr(t), "--broker-sasl-users", users},
			"a pipeline with neither tls: nor sasl: connects to the embedded broker's PLAINTEXT listener, which is off: give --broker-listen ADDR"},
		{[]string{"--broker-listen", "off"}, "the embedded broker is off"},
		{[]string{"--broker-listen", ""}, "--broker-listen is empty: write off"},
		{[]string{"--broker-sasl-ssl-listen", "127.0.0.1:0"}, "--broker-sasl-ssl-listen needs --broker-tls-cert and --broker-tls-key"},
	} {
		cmd := sluice(t, append([]string{"run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "1s"}, c.args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.wantErr) {
			t.Errorf("sluice run %v: err %v, want it to say %q:\n%s", c.args, err, c.wantErr, out)
		}
	}
}

// TestDaemonBuiltinSASL runs `sluice daemon` with its embedded broker on
// SASL_PLAINTEXT only: the pipeline with a sasl: block runs, the one
// without is failed with a reason naming --broker-listen.
func TestDaemonBuiltinSASL(t *testing.T) {
	dir := t.TempDir()
	users := writeUsers(t, dir)
	pdir := filepath.Join(dir, "pipelines")
	os.MkdirAll(pdir, 0o755)
	out := filepath.Join(dir, "out")
	os.WriteFile(filepath.Join(pdir, "secure.yaml"), []byte(fmt.Sprintf(`version: 1
name: secure
source:
  kafka:
    brokers: [builtin]
    topics: [events]
    sasl: {mechanism: scram-sha-256, username: pipe, password: pipe-pw}
batch: {interval: 50ms}
sink:
  file: {path: %s, format: raw}
`, out)), 0o644)
	os.WriteFile(filepath.Join(pdir, "plain.yaml"), []byte(fmt.Sprintf(`version: 1
name: plain
source:
  kafka: {brokers: [builtin], topics: [events]}
sink:
  file: {path: %s}
`, filepath.Join(dir, "out2"))), 0o644)
	brokerAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := sluice(t, "daemon", "--pipelines", pdir, "--data", filepath.Join(dir, "data"), "--http", httpAddr,
		"--broker-listen", "off", "--broker-sasl-listen", brokerAddr, "--broker-sasl-users", users)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForBroker(t, brokerAddr)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.DefaultProduceTopic("events"),
		kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "events", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(filetest.Lines(t, out)) < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 100 records written:\n%s", len(filetest.Lines(t, out)), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The pipeline without sasl: fails at every start (between starts it
	// is starting, or waiting with the failure in retrying).
	const want = "PLAINTEXT listener, which is off: give --broker-listen ADDR"
	for {
		resp, err := http.Get("http://" + httpAddr + "/pipelines/plain")
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			State    string `json:"state"`
			Error    string `json:"error"`
			Retrying string `json:"retrying"`
		}
		json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if strings.Contains(info.Error, want) || strings.Contains(info.Retrying, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline without sasl: must fail naming --broker-listen: %+v", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice daemon must exit 0 on SIGTERM: %v\n%s", err, stderr.String())
	}
	checkExactlyOnce(t, filetest.Lines(t, out), 100, true)
}
