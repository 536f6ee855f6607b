package daemon

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestAPIRefusesHostileRequests sends issue 13's probes, and their
// neighbours, to a running daemon: a page on another origin, a rebound
// name, no token or a wrong one. Each is refused with a one-line JSON
// error, and the pipeline they aimed at keeps running; the right token
// then pauses it.
func TestAPIRefusesHostileRequests(t *testing.T) {
	td := startDaemon(t, func(c *Config) { c.AllowedHosts = []string{"sluice.internal", "proxy.internal:8443"} })
	td.write("a.yaml", pipelineYAML("alpha", td.out, 1_000_000, 2000))
	td.waitFor("alpha running", func() bool { return td.info("alpha").State == StateRunning })
	_, port, _ := net.SplitHostPort(td.d.HTTPAddr())
	bearer := "Bearer " + td.token
	tokenPath := td.d.TokenFile()

	for _, c := range []struct {
		name     string
		method   string
		path     string
		body     string
		header   map[string]string
		code     int
		sentence string // in the error
	}{
		{"the issue's cross-origin form post", "POST", "/pipelines/alpha/pause", "x",
			map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403, "Origin: http://evil.example"},
		{"cross-origin, even with the token", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Origin": "http://evil.example", "Authorization": bearer}, 403, "cross-origin"},
		{"another port of localhost is another origin", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Origin": "http://localhost:1", "Authorization": bearer}, 403, "cross-origin"},
		{"an opaque origin", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Origin": "null", "Authorization": bearer}, 403, "cross-origin"},
		{"Sec-Fetch-Site cross-site", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Sec-Fetch-Site": "cross-site", "Authorization": bearer}, 403, "Sec-Fetch-Site: cross-site"},
		{"Sec-Fetch-Site same-site", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Sec-Fetch-Site": "same-site", "Authorization": bearer}, 403, "Sec-Fetch-Site: same-site"},
		{"text/plain, with the token", "POST", "/pipelines/alpha/pause", "x",
			map[string]string{"Content-Type": "text/plain", "Authorization": bearer}, 415, "application/json"},
		{"a form, with the token", "POST", "/pipelines/alpha/pause", "a=b",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": bearer}, 415, "application/json"},
		{"multipart, with the token", "POST", "/pipelines/alpha/pause", "--b--",
			map[string]string{"Content-Type": "multipart/form-data; boundary=b", "Authorization": bearer}, 415, "application/json"},
		{"a body without a type, with the token", "POST", "/pipelines/alpha/pause", "x",
			map[string]string{"Authorization": bearer}, 415, "application/json"},
		{"rebound name", "GET", "/pipelines", "", map[string]string{"Host": "attacker.example:" + port}, 421, "--http-allowed-host"},
		{"rebound name, without port", "GET", "/pipelines/alpha", "", map[string]string{"Host": "attacker.example"}, 421, "DNS rebinding"},
		{"rebound name, with the token", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Host": "attacker.example:" + port, "Authorization": bearer}, 421, "is not this daemon's address"},
		{"rebound name on /metrics", "GET", "/metrics", "", map[string]string{"Host": "attacker.example:" + port}, 421, "DNS rebinding"},
		{"localhost on another port", "GET", "/pipelines", "", map[string]string{"Host": "localhost:1"}, 421, "localhost:" + port},
		{"an IP address on the API", "GET", "/pipelines", "", map[string]string{"Host": "192.0.2.7:" + port}, 421, "--http-allowed-host"},
		{"an allowed name on another port than given", "GET", "/pipelines", "", map[string]string{"Host": "proxy.internal:443"}, 421, "DNS rebinding"},
		{"no token", "POST", "/pipelines/alpha/pause", "", nil, 401, "Authorization: Bearer $(cat " + tokenPath + ")"},
		{"wrong token", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Authorization": "Bearer " + strings.Repeat("0", 64)}, 401, "Bearer $(cat"},
		{"the token, one character short", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Authorization": bearer[:len(bearer)-1]}, 401, "Bearer $(cat"},
		{"the token as basic auth", "POST", "/pipelines/alpha/pause", "",
			map[string]string{"Authorization": "Basic " + td.token}, 401, "Bearer $(cat"},
		{"an unknown path needs the token too", "DELETE", "/pipelines/alpha", "", nil, 401, "Bearer $(cat"},
	} {
		code, body, err := td.do(c.method, c.path, c.body, c.header)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var e struct{ Error string }
		if code != c.code || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, c.sentence) ||
			strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %q, want %d and a one-line JSON error saying %q", c.name, code, body, c.code, c.sentence)
		}
		if strings.Contains(body, td.token) {
			t.Errorf("%s: the answer holds the token", c.name)
		}
	}
	if in := td.info("alpha"); in.State != StateRunning {
		t.Fatalf("a refused request changed the pipeline: %+v", in)
	}
	n := len(td.lines("alpha"))
	td.waitFor("alpha to keep writing", func() bool { return len(td.lines("alpha")) > n })

	// Open to anyone who can name the daemon, Prometheus by IP included.
	for _, c := range []struct{ path, host string }{
		{"/metrics", ""}, {"/healthz", ""}, {"/readyz", ""},
		{"/metrics", "192.0.2.7:9999"}, {"/healthz", "[2001:db8::1]:80"}, {"/readyz", "10.1.2.3"},
		{"/pipelines", "localhost:" + port}, {"/pipelines", "[::1]:" + port},
		{"/pipelines", "sluice.internal"}, {"/pipelines", "SLUICE.internal.:1234"}, {"/pipelines", "proxy.internal:8443"},
	} {
		header := map[string]string{}
		if c.host != "" {
			header["Host"] = c.host
		}
		if code, body, err := td.do("GET", c.path, "", header); err != nil || code != http.StatusOK {
			t.Errorf("GET %s, Host %q: %d %v %s", c.path, c.host, code, err, body)
		}
	}

	// The right token, from the daemon's own origin or from no browser.
	for _, c := range []struct {
		action string
		header map[string]string
		body   string
	}{
		{"pause", map[string]string{"Origin": "http://127.0.0.1:" + port, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}, "{}"},
		{"resume", map[string]string{"Origin": "https://sluice.internal", "Content-Type": "application/json; charset=utf-8"}, ""},
		{"restart", map[string]string{"Authorization": "bearer  " + td.token}, ""},
	} {
		if c.header["Authorization"] == "" {
			c.header["Authorization"] = bearer
		}
		code, body, err := td.do("POST", "/pipelines/alpha/"+c.action, c.body, c.header)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("%s with the token: %d %v %s", c.action, code, err, body)
		}
		if c.action == "pause" {
			td.waitFor("alpha paused", func() bool { return td.info("alpha").State == StatePaused })
		}
	}
	td.waitFor("alpha running after the restart", func() bool { return td.info("alpha").State == StateRunning })
}

// TestTokenFile: the daemon generates a random token, mode 0600, on its
// first start and logs where (never the token), keeps it across restarts,
// and takes an operator's file.
func TestTokenFile(t *testing.T) {
	var logs syncBuffer
	root := t.TempDir()
	cfg := Config{PipelinesDir: root, DataDir: filepath.Join(root, "data"), HTTPAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	start := func(cfg Config) (*Daemon, error) {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Listen(); err != nil {
			return nil, err
		}
		d.broker.Close()
		d.http.Close()
		return d, nil
	}
	d, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.DataDir, TokenFileName)
	if d.TokenFile() != path {
		t.Fatalf("token file %s, want %s", d.TokenFile(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(data))
	if b, err := hex.DecodeString(token); err != nil || len(b) != 32 {
		t.Fatalf("token %q: want 32 bytes in hex", token)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", st.Mode())
	}
	if !strings.Contains(logs.String(), "token_file="+path) || strings.Contains(logs.String(), token) {
		t.Fatalf("the log must name the token file and never hold the token:\n%s", logs.String())
	}
	if m, _ := filepath.Glob(filepath.Join(cfg.DataDir, ".*")); len(m) != 0 {
		t.Fatalf("left behind: %v", m)
	}

	// Kept across starts.
	if _, err := start(cfg); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(data) {
		t.Fatal("a second start replaced the token")
	}

	// An operator's file, in a directory that does not exist yet.
	own := cfg
	own.TokenFile = filepath.Join(root, "secrets", "token")
	if d, err = start(own); err != nil || d.TokenFile() != own.TokenFile {
		t.Fatalf("--http-token-file: %v", err)
	}
	if _, err := os.Stat(own.TokenFile); err != nil {
		t.Fatal(err)
	}

	// A short token is refused.
	short := cfg
	short.TokenFile = filepath.Join(root, "short")
	os.WriteFile(short.TokenFile, []byte("secret\n"), 0o600)
	if _, err := start(short); err == nil || !strings.Contains(err.Error(), "fewer than 32") {
		t.Fatalf("a 6-character token: %v", err)
	}
}

// TestTokenReadableByOthers: beyond loopback the daemon refuses to start
// with a token file every user can read or write; on loopback it warns.
func TestTokenReadableByOthers(t *testing.T) {
	for _, c := range []struct {
		addr string
		mode os.FileMode
		err  string
		warn bool
	}{
		{"0.0.0.0:0", 0o644, "readable or writable by every user (mode 0644): run chmod 600", false},
		{"0.0.0.0:0", 0o602, "readable or writable by every user (mode 0602): run chmod 600", false},
		{"0.0.0.0:0", 0o640, "", false},
		{"0.0.0.0:0", 0o600, "", false},
		{"127.0.0.1:0", 0o604, "", true},
	} {
		var logs syncBuffer
		root := t.TempDir()
		cfg := Config{PipelinesDir: root, DataDir: filepath.Join(root, "data"), HTTPAddr: c.addr, BrokerAddr: "127.0.0.1:0",
			TokenFile: filepath.Join(root, "token"), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		if err := os.WriteFile(cfg.TokenFile, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(cfg.TokenFile, c.mode)
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = d.Listen()
		if err == nil {
			d.broker.Close()
			d.http.Close()
		}
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), cfg.TokenFile)) {
			t.Errorf("%s, mode %04o: err = %v, want %q", c.addr, c.mode, err, c.err)
		}
		if warned := strings.Contains(logs.String(), "readable or writable by every user"); warned != c.warn {
			t.Errorf("%s, mode %04o: warned %v, want %v:\n%s", c.addr, c.mode, warned, c.warn, logs.String())
		}
	}
}

func TestGuardHosts(t *testing.T) {
	g := newGuard(nil, nil, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8080}, "host.lan:8080", []string{"a.example", "b.example:9000", "[2001:db8::2]:8080"})
	for _, c := range []struct {
		host  string
		anyIP bool
		want  bool
	}{
		{"192.0.2.1:8080", false, true},
		{"192.0.2.1:80", false, false},
		{"192.0.2.1", false, false}, // port 80
		{"localhost:8080", false, true},
		{"host.lan:8080", false, true}, // named in --http
		{"host.lan:9000", false, false},
		{"LOCALHOST.:8080", false, true},
		{"127.0.0.1:8080", false, true},
		{"[::1]:8080", false, true},
		{"[::1]", false, false},
		{"a.example", false, true},
		{"a.example:1", false, true},
		{"b.example:9000", false, true},
		{"b.example", false, false},
		{"[2001:db8::2]:8080", false, true},
		{"[2001:db8::2]:8081", false, false},
		{"evil.example:8080", false, false},
		{"evil.example:8080", true, false},
		{"localhost.evil.example:8080", false, false},
		{"192.0.2.99:1", false, false},
		{"192.0.2.99:1", true, true},
		{"", false, false},
		{"", true, false},
	} {
		if got := g.hostAllowed(c.host, "80", c.anyIP); got != c.want {
			t.Errorf("Host %q (any IP %v): allowed %v, want %v", c.host, c.anyIP, got, c.want)
		}
	}
	// A wildcard listener adds no address of its own.
	g = newGuard(nil, nil, &net.TCPAddr{IP: net.IPv4zero, Port: 8080}, ":8080", nil)
	if g.hostAllowed("0.0.0.0:8080", "80", false) || !g.hostAllowed("localhost:8080", "80", false) {
		t.Error("a wildcard listener: only localhost and allowed names")
	}
}

// syncBuffer is a bytes.Buffer the daemon's goroutines may log into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
