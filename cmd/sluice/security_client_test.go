package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/testpki"
)

// runToolEnv runs a sluice console tool with extra environment and stdin;
// it returns stdout, and an error holding stderr when it fails.
func runToolEnv(t *testing.T, env []string, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := sluice(t, args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), &toolError{err, errb.String()}
		}
		return out.String(), nil
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sluice %v did not finish", args)
		return "", nil
	}
}

// secureKfake starts a kfake cluster that wants TLS with a client
// certificate and SASL, with SCRAM-SHA-256 superuser admin and PLAIN
// superuser plain.
func secureKfake(t *testing.T, pki *testpki.PKI) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin-secret"),
		kfake.Superuser("PLAIN", "plain", "plain-secret"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.Pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}),
		kfake.SeedTopics(1, "seeded"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// TestConsoleToolsSecurityFlags runs the console tools against a cluster
// that wants TLS, a client certificate and SASL: with everything right
// they work, and each thing left out or wrong is one line saying which
// flag to change.
func TestConsoleToolsSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	addr := secureKfake(t, pki)
	pwFile := filepath.Join(dir, "admin-password")
	if err := os.WriteFile(pwFile, []byte("admin-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsFlags := []string{"--tls-ca", pki.CA, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey}
	admin := append([]string{"--bootstrap", addr, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-user", "admin", "--sasl-password-file", pwFile}, tlsFlags...)
	with := func(base []string, args ...string) []string { return append(append([]string{}, args...), base...) }

	// Everything right, the password from a file.
	out, err := runToolEnv(t, nil, "", with(admin, "topic", "list")...)
	if err != nil || !strings.Contains(out, "seeded") {
		t.Fatalf("topic list with TLS and SCRAM: out %q, err %v", out, err)
	}
	// The same from the environment, the password in SLUICE_SASL_PASSWORD,
	// PLAIN this time; produce and consume a record.
	env := []string{"SLUICE_BOOTSTRAP=" + addr, "SLUICE_TLS_CA=" + pki.CA, "SLUICE_TLS_CERT=" + pki.ClientCert,
		"SLUICE_TLS_KEY=" + pki.ClientKey, "SLUICE_SASL_MECHANISM=PLAIN", "SLUICE_SASL_USER=plain", "SLUICE_SASL_PASSWORD=plain-secret"}
	if _, err := runToolEnv(t, env, "hello\n", "produce", "--topic", "seeded"); err != nil {
		t.Fatalf("produce configured by the environment: %v", err)
	}
	out, err = runToolEnv(t, env, "", "consume", "--topic", "seeded", "--from-beginning", "--max-messages", "1")
	if err != nil || out != "hello\n" {
		t.Fatalf("consume configured by the environment: out %q, err %v", out, err)
	}

	rogue := testpki.New(t, t.TempDir())
	for _, c := range []struct {
		name    string
		env     []string
		args    []string
		wantErr string
	}{
		{"wrong password", []string{"SLUICE_SASL_PASSWORD=nope"},
			append([]string{"--bootstrap", addr, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-user", "admin"}, tlsFlags...),
			"check --sasl-user (admin), --sasl-mechanism (SCRAM-SHA-256) and the password"},
		{"unknown user", []string{"SLUICE_SASL_PASSWORD=admin-secret"},
			append([]string{"--bootstrap", addr, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "nobody"}, tlsFlags...),
			"and the password"},
		{"no password", nil,
			append([]string{"--bootstrap", addr, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-user", "admin"}, tlsFlags...),
			"no password for SASL user admin: give --sasl-password-file FILE or set SLUICE_SASL_PASSWORD"},
		{"user without mechanism", nil, []string{"--bootstrap", addr, "--sasl-user", "admin"},
			"--sasl-user needs --sasl-mechanism"},
		{"bad mechanism", nil, []string{"--bootstrap", addr, "--sasl-mechanism", "GSSAPI", "--sasl-user", "admin"},
			`--sasl-mechanism "GSSAPI": use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"cert without key", nil, []string{"--bootstrap", addr, "--tls-cert", pki.ClientCert},
			"give both --tls-cert and --tls-key"},
		{"no TLS", nil, []string{"--bootstrap", addr, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-user", "admin", "--sasl-password-file", pwFile},
			"may want TLS (--tls, --tls-ca)"},
		{"untrusted broker", nil, with(admin[:len(admin)-len(tlsFlags)], "--tls"),
			"is not trusted: give --tls-ca with the CA that signed it"},
		{"no client certificate", nil, append(admin[:len(admin)-len(tlsFlags)], "--tls-ca", pki.CA),
			"refused the client certificate: give --tls-cert and --tls-key"},
		{"client certificate of another CA", nil, append(admin[:len(admin)-len(tlsFlags)], "--tls-ca", pki.CA, "--tls-cert", rogue.ClientCert, "--tls-key", rogue.ClientKey),
			"refused the client certificate"},
		{"no SASL", nil, append([]string{"--bootstrap", addr}, tlsFlags...),
			"may want SASL (--sasl-mechanism, --sasl-user)"},
		{"nothing listening", nil, []string{"--bootstrap", "127.0.0.1:1"},
			"nothing listens at 127.0.0.1:1: start the broker, or give its address with --bootstrap"},
	} {
		_, err := runToolEnv(t, c.env, "", with(c.args, "topic", "list")...)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: got %v, want an error saying %q", c.name, err, c.wantErr)
			continue
		}
		// One line: the tool's error and nothing else.
		if stderr := err.(*toolError).stderr; strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: stderr is more than one line:\n%s", c.name, stderr)
		}
	}
}

// TestUserCommands manages SCRAM users with sluice user against kfake
// (which implements Kafka's SCRAM admin APIs), then checks that the users
// it set authenticate. (kcat is not used here: librdkafka's SASL fails
// against kfake with "SASL Handshake not supported by broker".)
func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	addr := secureKfake(t, pki)
	admin := []string{"SLUICE_BOOTSTRAP=" + addr, "SLUICE_TLS_CA=" + pki.CA, "SLUICE_TLS_CERT=" + pki.ClientCert,
		"SLUICE_TLS_KEY=" + pki.ClientKey, "SLUICE_SASL_MECHANISM=SCRAM-SHA-256", "SLUICE_SASL_USER=admin", "SLUICE_SASL_PASSWORD=admin-secret"}
	as := func(user, mech, pass string) []string {
		return append(append([]string{}, admin[:4]...), "SLUICE_SASL_MECHANISM="+mech, "SLUICE_SASL_USER="+user, "SLUICE_SASL_PASSWORD="+pass)
	}
	pwFile := filepath.Join(dir, "alice-256")
	if err := os.WriteFile(pwFile, []byte("alice-256-pw\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name, stdin string
		args        []string
		want        string // stdout must contain
		wantErr     string // or it fails saying this
	}{
		{name: "add from stdin", stdin: "alice-pw\n", args: []string{"user", "set", "alice", "--iterations", "8192"},
			want: "user alice: added SCRAM-SHA-512 credential (8192 iterations)\n"},
		{name: "replace", stdin: "alice-pw2\n", args: []string{"user", "set", "alice", "--mechanism", "scram-sha-512", "--iterations", "4096"},
			want: "user alice: replaced SCRAM-SHA-512 credential (4096 iterations, was 8192)\n"},
		{name: "add 256 from file", args: []string{"user", "set", "alice", "--mechanism", "SCRAM-SHA-256", "--password-file", pwFile, "--iterations", "4096"},
			want: "user alice: added SCRAM-SHA-256 credential (4096 iterations)\n"},
		{name: "list", args: []string{"user", "list"}, want: "alice  SCRAM-SHA-256  4096\nalice  SCRAM-SHA-512  4096\n"},
		{name: "list one", args: []string{"user", "list", "alice"}, want: "USER   MECHANISM      ITERATIONS\nalice  SCRAM-SHA-256"},
		{name: "too few iterations", stdin: "x\n", args: []string{"user", "set", "bob", "--iterations", "100"}, wantErr: "--iterations 100: use 4096 to 16384"},
		{name: "PLAIN", stdin: "x\n", args: []string{"user", "set", "bob", "--mechanism", "PLAIN"}, wantErr: "use SCRAM-SHA-256 or SCRAM-SHA-512"},
		{name: "empty password", stdin: "\n", args: []string{"user", "set", "bob"}, wantErr: "stdin is empty: its first line is the password"},
		{name: "password as argument", args: []string{"user", "set", "bob", "hunter2"}, wantErr: "accepts 1 arg"},
		{name: "delete unknown", args: []string{"user", "delete", "nobody"}, wantErr: "user nobody has no SCRAM credentials"},
	}
	for _, s := range steps {
		out, err := runToolEnv(t, admin, s.stdin, s.args...)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%s: got %v, want an error saying %q", s.name, err, s.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("%s: out %q, err %v; want %q", s.name, out, err, s.want)
		}
	}

	// The users set authenticate with their last passwords, and not with
	// earlier ones. (kfake authenticates only credentials of 4096
	// iterations, so those are the ones used here.)
	if out, err := runToolEnv(t, as("alice", "SCRAM-SHA-512", "alice-pw2"), "", "topic", "list"); err != nil || !strings.Contains(out, "seeded") {
		t.Fatalf("alice with SCRAM-SHA-512: out %q, err %v", out, err)
	}
	if out, err := runToolEnv(t, as("alice", "SCRAM-SHA-256", "alice-256-pw"), "", "topic", "list"); err != nil || !strings.Contains(out, "seeded") {
		t.Fatalf("alice with SCRAM-SHA-256 (password file with CRLF): out %q, err %v", out, err)
	}
	if _, err := runToolEnv(t, as("alice", "SCRAM-SHA-512", "alice-pw"), "", "topic", "list"); err == nil || !strings.Contains(err.Error(), "and the password") {
		t.Fatalf("alice with her replaced password: err %v, want authentication failed", err)
	}
	// Deleting one mechanism leaves the other.
	out, err := runToolEnv(t, admin, "", "user", "delete", "alice", "--mechanism", "SCRAM-SHA-512")
	if err != nil || out != "user alice: deleted SCRAM-SHA-512 credential\n" {
		t.Fatalf("delete alice's SCRAM-SHA-512: out %q, err %v", out, err)
	}
	if _, err := runToolEnv(t, as("alice", "SCRAM-SHA-512", "alice-pw2"), "", "topic", "list"); err == nil || !strings.Contains(err.Error(), "and the password") {
		t.Fatalf("alice with a deleted SCRAM-SHA-512 credential: err %v, want authentication failed", err)
	}
	out, err = runToolEnv(t, admin, "", "user", "delete", "alice")
	if err != nil || out != "user alice: deleted SCRAM-SHA-256 credential\n" {
		t.Fatalf("delete alice: out %q, err %v", out, err)
	}
	out, err = runToolEnv(t, admin, "", "user", "list", "alice")
	if err == nil && strings.Contains(out, "alice") {
		t.Fatalf("alice still listed after delete: %q", out)
	}
}

// TestAuthorizationHint: a tool refused by an ACL says so and what to do,
// on one line (kfake enforces Kafka's ACLs).
func TestAuthorizationHint(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin-pw"), kfake.SeedTopics(1, "seeded"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	admin := []string{"SLUICE_BOOTSTRAP=" + addr, "SLUICE_SASL_MECHANISM=SCRAM-SHA-256", "SLUICE_SASL_USER=admin", "SLUICE_SASL_PASSWORD=admin-pw"}
	if _, err := runToolEnv(t, admin, "bob-pw\n", "user", "set", "bob", "--mechanism", "SCRAM-SHA-256", "--iterations", "4096"); err != nil {
		t.Fatal(err)
	}
	bob := []string{"SLUICE_BOOTSTRAP=" + addr, "SLUICE_SASL_MECHANISM=SCRAM-SHA-256", "SLUICE_SASL_USER=bob", "SLUICE_SASL_PASSWORD=bob-pw"}
	for _, args := range [][]string{
		{"topic", "create", "other"},
		{"consume", "--topic", "seeded", "--from-beginning", "--max-messages", "1"},
	} {
		_, err := runToolEnv(t, bob, "", args...)
		if err == nil || !strings.Contains(err.Error(), "AUTHORIZATION_FAILED") || !strings.Contains(err.Error(), "a super user grants it with sluice acl create") {
			t.Errorf("sluice %v as bob without ACLs: %v, want an authorization failure with the hint", args, err)
			continue
		}
		if stderr := err.(*toolError).stderr; strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("sluice %v: stderr is more than one line:\n%s", args, stderr)
		}
	}
}

// TestUserSetPromptsWithoutEcho: at a terminal, sluice user set asks for
// the password and does not show what is typed; the user then logs in
// with it.
func TestUserSetPromptsWithoutEcho(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin-pw"), kfake.SeedTopics(1, "seeded"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	cmd := sluice(t, "user", "set", "carol", "--iterations", "4096")
	cmd.Env = append(cmd.Env, "SLUICE_BOOTSTRAP="+addr, "SLUICE_SASL_MECHANISM=SCRAM-SHA-256",
		"SLUICE_SASL_USER=admin", "SLUICE_SASL_PASSWORD=admin-pw")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Read up to the prompt, answer it, then read to the end (EIO once
	// the child exits).
	var out bytes.Buffer
	buf := make([]byte, 256)
	for !strings.Contains(out.String(), "password for carol: ") {
		n, err := tty.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			t.Fatalf("no prompt before %v: %q", err, out.String())
		}
	}
	if _, err := tty.Write([]byte("typed-secret\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(&out, tty); err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice user set at a terminal: %v\n%q", err, out.String())
	}
	if s := out.String(); strings.Contains(s, "typed-secret") || !strings.Contains(s, "user carol: added SCRAM-SHA-512 credential (4096 iterations)") {
		t.Fatalf("the password must not be echoed and the user must be added: %q", s)
	}
	carol := []string{"SLUICE_BOOTSTRAP=" + addr, "SLUICE_SASL_MECHANISM=SCRAM-SHA-512", "SLUICE_SASL_USER=carol", "SLUICE_SASL_PASSWORD=typed-secret"}
	if out, err := runToolEnv(t, carol, "", "topic", "list"); err != nil || !strings.Contains(out, "seeded") {
		t.Fatalf("carol with the password typed at the terminal: out %q, err %v", out, err)
	}
}
