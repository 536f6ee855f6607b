package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestBrokerListenerFlagRefusals: an address without a host, an empty
// address, every listener off and a SASL listener without users are each
// refused at start with a one-line reason.
func TestBrokerListenerFlagRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", ":9092"}, "write 0.0.0.0:9092 for every interface or 127.0.0.1:9092"},
		{[]string{"--listen", ""}, "write off to switch that listener off"},
		{[]string{"--listen", "off"}, "every listener is off"},
		{[]string{"--listen", "off", "--sasl-listen", "127.0.0.1:0"}, "no SASL users"},
		{[]string{"--sasl-ssl-listen", "127.0.0.1:0"}, "--sasl-ssl-listen needs --tls-cert"},
		{[]string{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert"},
	} {
		out, err := sluice(t, append([]string{"broker", "--data", t.TempDir()}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("sluice broker %v: %v\n%s\nwant an error saying %q", tc.args, err, out, tc.want)
		}
	}
}

// TestBrokerSASLOnly runs `sluice broker` with the plain listener off and a
// SASL listener seeded from a users file; franz-go logs in with SCRAM.
func TestBrokerSASLOnly(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(users, []byte("- name: app\n  password: app-secret\n  mechanisms: [SCRAM-SHA-256]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := sluice(t, "broker", "--data", filepath.Join(dir, "data"), "--listen", "off",
		"--sasl-listen", "127.0.0.1:0", "--sasl-users", users)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)" security=(\S+)`)
	sc := bufio.NewScanner(stderr)
	var addrs []string
	for len(addrs) == 0 && sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			if m[2] != "SASL_PLAINTEXT" {
				t.Fatalf("listener %s is %s; only SASL_PLAINTEXT was asked for", m[1], m[2])
			}
			addrs = append(addrs, m[1])
		}
	}
	if len(addrs) == 0 {
		t.Fatal("sluice broker did not log its address")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	ask := func(pass string) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs[0]), kgo.RequestRetries(0),
			kgo.SASL(scram.Auth{User: "app", Pass: pass}.AsSha256Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err = kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		return err
	}
	if err := ask("app-secret"); err != nil {
		t.Fatalf("login with the file's password: %v", err)
	}
	if err := ask("guess"); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("login with a wrong password: %v", err)
	}
}
