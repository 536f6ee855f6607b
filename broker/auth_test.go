package broker

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// testUsers is the users file of these tests: alice may use every
// mechanism, bob only SCRAM-SHA-512.
const testUsers = `
- name: alice
  password: alice-secret
- name: bob
  password: bob-secret
  mechanisms: [SCRAM-SHA-512]
`

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// logins records the principals the broker assigned, in order.
type logins struct {
	mu   sync.Mutex
	seen []string
}

func (l *logins) add(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, p)
}

func (l *logins) has(p string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.seen {
		if s == p {
			return true
		}
	}
	return false
}

// authBroker opens a broker on dir with the users file and serves the
// listeners, returning their addresses in the same order.
func authBroker(t testing.TB, dir, usersFile string, cfgs ...ListenerConfig) (*Broker, *logins, []string) {
	t.Helper()
	return authBrokerOpts(t, dir, Options{UsersFile: usersFile}, cfgs...)
}

func authBrokerOpts(t testing.TB, dir string, opts Options, cfgs ...ListenerConfig) (*Broker, *logins, []string) {
	t.Helper()
	opts.Logger = testLogger(t)
	b, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open broker: %v", err)
	}
	seen := &logins{}
	b.testHookLogin = seen.add
	t.Cleanup(func() { b.Close() })
	var addrs []string
	for _, cfg := range cfgs {
		l, err := b.ListenWith(cfg)
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
	}
	return b, seen, addrs
}

func mechanism(name, user, pass string) sasl.Mechanism {
	switch name {
	case MechPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case MechSCRAMSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	}
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

// ping asks for metadata once, without retries, so a refused login
// surfaces as the error.
func ping(t testing.TB, addr string, opts ...kgo.Opt) error {
	t.Helper()
	cl := newKgo(t, addr, append(opts, kgo.RequestRetries(0))...)
	ctx, cancel := context.WithTimeout(ctxT(t), 15*time.Second)
	defer cancel()
	_, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	return err
}

// TestSASLFranzGo logs in with each mechanism through franz-go with the
// right password (and uses the connection), a wrong one and an unknown
// user; bob may not use PLAIN.
func TestSASLFranzGo(t *testing.T) {
	dir := t.TempDir()
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	b, seen, addrs := authBroker(t, dir, users, ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext})
	addr := addrs[0]
	for _, mech := range Mechanisms {
		t.Run(mech, func(t *testing.T) {
			cl := newKgo(t, addr, kgo.SASL(mechanism(mech, "alice", "alice-secret")), kgo.DefaultProduceTopic("t-"+mech))
			createTopic(t, cl, "t-"+mech, 1)
			if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatalf("produce as alice: %v", err)
			}
			if !seen.has("User:alice") {
				t.Fatalf("principals %v lack User:alice", seen.seen)
			}
			for _, bad := range []struct{ user, pass string }{{"alice", "wrong"}, {"nobody", "alice-secret"}} {
				err := ping(t, addr, kgo.SASL(mechanism(mech, bad.user, bad.pass)))
				if !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Fatalf("login as %s/%s: %v, want SASL_AUTHENTICATION_FAILED", bad.user, bad.pass, err)
				}
			}
		})
	}
	if err := ping(t, addr, kgo.SASL(mechanism(MechSCRAMSHA512, "bob", "bob-secret"))); err != nil {
		t.Fatalf("bob with SCRAM-SHA-512: %v", err)
	}
	for _, mech := range []string{MechPlain, MechSCRAMSHA256} {
		if err := ping(t, addr, kgo.SASL(mechanism(mech, "bob", "bob-secret"))); !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("bob with %s, not among his mechanisms: %v", mech, err)
		}
	}
	// Without SASL, the connection is closed at the first request.
	if err := ping(t, addr); err == nil {
		t.Fatal("metadata without logging in succeeded on a SASL listener")
	}
	m := b.Metrics().authentications
	if got := testutil.ToFloat64(m.WithLabelValues(MechSCRAMSHA256, "failed")); got != 3 {
		t.Fatalf("SCRAM-SHA-256 failures counted %v, want 3 (alice wrong, unknown user, bob)", got)
	}
	if got := testutil.ToFloat64(m.WithLabelValues(MechPlain, "ok")); got < 1 {
		t.Fatalf("PLAIN successes counted %v", got)
	}
}

// TestProduceBeforeLogin sends a Produce on a SASL listener before logging
// in: the connection is closed and nothing is written.
func TestProduceBeforeLogin(t *testing.T) {
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	b, _, addrs := authBroker(t, t.TempDir(), users, ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext})
	admin := newKgo(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, "alice", "alice-secret")))
	createTopic(t, admin, "guarded", 1)

	nc, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var f kmsg.RequestFormatter
	// ApiVersions is served before login.
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	av.ClientSoftwareName, av.ClientSoftwareVersion = "test", "1"
	if _, err := nc.Write(f.AppendRequest(nil, av, 1)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatalf("ApiVersions before login not answered: %v", err)
	}
	if _, err := io.CopyN(io.Discard, nc, int64(binary.BigEndian.Uint32(size[:]))); err != nil {
		t.Fatal(err)
	}
	prod := kmsg.NewPtrProduceRequest()
	prod.Version, prod.Acks, prod.TimeoutMillis = 7, -1, 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "guarded"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = testBatch("sneaky")
	pt.Partitions = append(pt.Partitions, pp)
	prod.Topics = append(prod.Topics, pt)
	if _, err := nc.Write(f.AppendRequest(nil, prod, 2)); err != nil {
		t.Fatal(err)
	}
	if n, err := nc.Read(size[:]); err == nil {
		t.Fatalf("Produce before login answered with %d bytes; want the connection closed", n)
	}
	if end := b.topics.partition("guarded", 0).EndOffset(); end != 0 {
		t.Fatalf("log end offset %d after an unauthenticated produce; want 0", end)
	}
}

// TestSCRAMAdminAndRestart adds a user with kadm (AlterUserScramCredentials)
// over an authenticated connection, logs in as it, and finds it after a
// restart; the stored credentials hold no password.
func TestSCRAMAdminAndRestart(t *testing.T) {
	dir := t.TempDir()
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	cfg := ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext}
	b, _, addrs := authBroker(t, dir, users, cfg)
	adm := kadm.NewClient(newKgo(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, "alice", "alice-secret"))))
	res, err := adm.AlterUserSCRAMs(ctxT(t), nil, []kadm.UpsertSCRAM{
		{User: "carol", Mechanism: kadm.ScramSha512, Iterations: 8192, Password: "carol-secret"},
		{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "carol-secret"},
	})
	if err != nil || res.Error() != nil {
		t.Fatalf("add carol: %v %v", err, res.Error())
	}
	for _, mech := range []string{MechSCRAMSHA256, MechSCRAMSHA512} {
		if err := ping(t, addrs[0], kgo.SASL(mechanism(mech, "carol", "carol-secret"))); err != nil {
			t.Fatalf("carol with %s: %v", mech, err)
		}
	}
	// Users added through the API do not get PLAIN, as in Kafka.
	if err := ping(t, addrs[0], kgo.SASL(mechanism(MechPlain, "carol", "carol-secret"))); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("carol with PLAIN: %v", err)
	}
	described, err := adm.DescribeUserSCRAMs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c := described["carol"]; len(c.CredInfos) != 2 || c.CredInfos[1].Iterations != 8192 {
		t.Fatalf("carol described as %+v", c)
	}
	if len(described) != 3 {
		t.Fatalf("described %d users, want alice, bob and carol", len(described))
	}

	b.Close()
	_, _, addrs = authBroker(t, dir, users, cfg)
	if err := ping(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, "carol", "carol-secret"))); err != nil {
		t.Fatalf("carol after a restart: %v", err)
	}
	if err := ping(t, addrs[0], kgo.SASL(mechanism(MechPlain, "alice", "alice-secret"))); err != nil {
		t.Fatalf("alice after a restart: %v", err)
	}
	stored, err := os.ReadFile(filepath.Join(dir, usersFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"alice-secret", "bob-secret", "carol-secret"} {
		if bytes.Contains(stored, []byte(pw)) {
			t.Fatalf("%s holds the password %q", usersFile, pw)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, usersFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v; want 0600", usersFile, fi.Mode().Perm())
	}
}

// TestAlterSCRAMValidation checks Kafka's answers to invalid changes, user
// by user: one user's error leaves the others' changes applied.
func TestAlterSCRAMValidation(t *testing.T) {
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	_, _, addrs := authBroker(t, t.TempDir(), users, ListenerConfig{Addr: "127.0.0.1:0"})
	cl := newKgo(t, addrs[0])
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	up := func(name string, mech int8, iters int32) {
		u := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		u.Name, u.Mechanism, u.Iterations, u.Salt, u.SaltedPassword = name, mech, iters, []byte("salt"), bytes.Repeat([]byte{1}, 32)
		req.Upsertions = append(req.Upsertions, u)
	}
	del := func(name string, mech int8) {
		d := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
		d.Name, d.Mechanism = name, mech
		req.Deletions = append(req.Deletions, d)
	}
	up("few", 1, 4095)
	up("many", 1, 16385)
	up("mech", 3, 4096)
	up("", 1, 4096)
	del("twice", 1)
	up("twice", 1, 4096)
	del("ghost", 2)
	del("bob", 2)       // bob's only credential: bob is gone
	up("dave", 1, 4096) // valid
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*kerr.Error{
		"few": kerr.UnacceptableCredential, "many": kerr.UnacceptableCredential, "mech": kerr.UnsupportedSaslMechanism,
		"": kerr.UnacceptableCredential, "twice": kerr.DuplicateResource, "ghost": kerr.ResourceNotFound, "bob": nil, "dave": nil,
	}
	if len(resp.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(resp.Results), len(want), resp.Results)
	}
	for _, r := range resp.Results {
		w, ok := want[r.User]
		if !ok {
			t.Fatalf("result for unexpected user %q", r.User)
		}
		if got := kerr.ErrorForCode(r.ErrorCode); got != error(w) && !(w == nil && got == nil) {
			t.Errorf("user %q: %v, want %v", r.User, got, w)
		}
	}
	dreq := kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()
	for _, n := range []string{"dave", "bob", "alice", "alice"} {
		u := kmsg.NewDescribeUserSCRAMCredentialsRequestUser()
		u.Name = n
		dreq.Users = append(dreq.Users, u)
	}
	dresp, err := dreq.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, r := range dresp.Results {
		codes[r.User] = r.ErrorCode
	}
	if codes["dave"] != 0 || codes["bob"] != kerr.ResourceNotFound.Code || codes["alice"] != kerr.DuplicateResource.Code || len(codes) != 3 {
		t.Fatalf("describe answered %v", codes)
	}
}

// TestUsersFileAcrossRestarts: the file sets the passwords of the users it
// names, removes those it made and no longer names, and leaves users added
// through the API alone.
func TestUsersFileAcrossRestarts(t *testing.T) {
	dir, cfgDir := t.TempDir(), t.TempDir()
	cfg := ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext}
	users := writeFile(t, cfgDir, "users.yaml", testUsers)
	b, _, addrs := authBroker(t, dir, users, cfg)
	adm := kadm.NewClient(newKgo(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, "alice", "alice-secret"))))
	if res, err := adm.AlterUserSCRAMs(ctxT(t), nil, []kadm.UpsertSCRAM{{User: "carol", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "carol-secret"}}); err != nil || res.Error() != nil {
		t.Fatalf("add carol: %v %v", err, res.Error())
	}
	before, _ := os.ReadFile(filepath.Join(dir, usersFile))
	b.Close()

	// Same file: nothing is rewritten (salts stay).
	b, _, _ = authBroker(t, dir, users, cfg)
	b.Close()
	if after, _ := os.ReadFile(filepath.Join(dir, usersFile)); !bytes.Equal(before, after) {
		t.Fatal("the same users file rewrote the stored credentials")
	}

	writeFile(t, cfgDir, "users.yaml", "- name: alice\n  password: new-secret\n")
	_, _, addrs = authBroker(t, dir, users, cfg)
	login := func(user, pass string) error {
		return ping(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, user, pass)))
	}
	if err := login("alice", "new-secret"); err != nil {
		t.Fatalf("alice with the file's new password: %v", err)
	}
	if err := login("alice", "alice-secret"); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("alice with the old password: %v", err)
	}
	if err := login("bob", "bob-secret"); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("bob, dropped from the file: %v", err)
	}
	if err := login("carol", "carol-secret"); err != nil {
		t.Fatalf("carol, added through the API: %v", err)
	}
}

func TestListenerRefusals(t *testing.T) {
	b, err := Open(t.TempDir(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tc := range []struct {
		cfg  ListenerConfig
		want string
	}{
		{ListenerConfig{Addr: ":0"}, "write 0.0.0.0:0 for every interface or 127.0.0.1:0"},
		{ListenerConfig{Addr: ""}, "use host:port"},
		{ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext}, "no SASL users"},
		{ListenerConfig{Addr: "127.0.0.1:0", Security: SSL}, "needs a TLS certificate"},
		{ListenerConfig{Addr: "127.0.0.1:0", Security: "SASL_KERBEROS"}, "unknown security protocol"},
	} {
		if _, err := b.ListenWith(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := b.Listen(":0", nil); err == nil {
		t.Error("Listen(\":0\") opened a listener on every interface")
	}
}

// testPKI is a CA with certificates it signed, written as PEM files.
type testPKI struct {
	dir string
	ca  *x509.Certificate
	key *ecdsa.PrivateKey
}

func newPKI(t testing.TB, dir, name string) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: dir, ca: ca, key: key}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	return p
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue signs a certificate for subject and writes name.pem and
// name-key.pem; a server certificate is for 127.0.0.1.
func (p *testPKI) issue(t testing.TB, name string, subject pkix.Name, server bool) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

// mtlsSetup is a broker with an SSL and a SASL_SSL listener requiring
// client certificates from one CA, and certificates for alice (that CA)
// and mallory (another CA).
type mtlsSetup struct {
	b                     *Broker
	seen                  *logins
	ssl, saslSSL          string
	caFile                string
	alice, mallory        [2]string // cert, key files
	aliceDN, aliceSubject string
}

func newMTLS(t *testing.T) *mtlsSetup {
	dir := t.TempDir()
	pki := newPKI(t, dir, "ca")
	other := newPKI(t, dir, "other-ca")
	srvCert, srvKey := pki.issue(t, "server", pkix.Name{CommonName: "broker"}, true)
	s := &mtlsSetup{caFile: filepath.Join(dir, "ca.pem")}
	aliceName := pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng"}, Organization: []string{"Example, Inc."}, Country: []string{"US"}}
	s.alice[0], s.alice[1] = pki.issue(t, "alice", aliceName, false)
	s.mallory[0], s.mallory[1] = other.issue(t, "mallory", pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng"}}, false)
	// Java's X500Principal writes the most specific part first and
	// escapes the comma.
	s.aliceDN = `User:CN=alice,OU=eng,O=Example\, Inc.,C=US`
	tlsCfg, err := ServerTLS(srvCert, srvKey, s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	users := writeFile(t, dir, "users.yaml", testUsers)
	var addrs []string
	s.b, s.seen, addrs = authBroker(t, t.TempDir(), users,
		ListenerConfig{Addr: "127.0.0.1:0", Security: SSL, TLS: tlsCfg},
		ListenerConfig{Addr: "127.0.0.1:0", Security: SASLSSL, TLS: tlsCfg})
	s.ssl, s.saslSSL = addrs[0], addrs[1]
	return s
}

func (s *mtlsSetup) clientTLS(t testing.TB, cert [2]string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert[0] != "" {
		c, err := tls.LoadX509KeyPair(cert[0], cert[1])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// TestMTLSFranzGo: a certificate from the client CA is accepted and names
// the principal; none, or one from another CA, is refused in the
// handshake. On SASL_SSL the SASL user is the principal.
func TestMTLSFranzGo(t *testing.T) {
	s := newMTLS(t)
	cl := newKgo(t, s.ssl, kgo.DialTLSConfig(s.clientTLS(t, s.alice)))
	createTopic(t, cl, "tls", 1)
	if !s.seen.has(s.aliceDN) {
		t.Fatalf("principals %v lack %s", s.seen.seen, s.aliceDN)
	}
	for name, cert := range map[string][2]string{"no certificate": {}, "another CA": s.mallory} {
		if err := ping(t, s.ssl, kgo.DialTLSConfig(s.clientTLS(t, cert))); err == nil {
			t.Fatalf("%s: metadata over mTLS succeeded", name)
		}
	}
	// The broker counts a refusal when its side of the handshake fails,
	// which with TLS 1.3 may come after the client saw the connection
	// closed.
	eventually(t, "both refused handshakes counted", func() bool {
		return testutil.ToFloat64(s.b.Metrics().authentications.WithLabelValues("TLS", "failed")) >= 2
	})
	if err := ping(t, s.saslSSL, kgo.DialTLSConfig(s.clientTLS(t, s.alice)), kgo.SASL(mechanism(MechSCRAMSHA256, "bob", "bob-secret"))); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("bob with SCRAM-SHA-256 over SASL_SSL: %v", err)
	}
	if err := ping(t, s.saslSSL, kgo.DialTLSConfig(s.clientTLS(t, s.alice)), kgo.SASL(mechanism(MechSCRAMSHA512, "bob", "bob-secret"))); err != nil {
		t.Fatalf("bob over SASL_SSL with alice's certificate: %v", err)
	}
	if !s.seen.has("User:bob") {
		t.Fatalf("principals %v lack User:bob (the SASL identity wins on SASL_SSL)", s.seen.seen)
	}
}

func TestDistinguishedName(t *testing.T) {
	for _, tc := range []struct {
		name pkix.Name
		want string
	}{
		{pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng"}, Organization: []string{"Example"}, Locality: []string{"Paris"}, Province: []string{"IDF"}, Country: []string{"FR"}},
			"CN=alice,OU=eng,O=Example,L=Paris,ST=IDF,C=FR"},
		{pkix.Name{CommonName: ` a+b=c<d>#e;"f\ `}, `CN=\ a\+b\=c\<d\>\#e\;\"f\\\ `},
		// emailAddress has no keyword: its dotted OID and DER in hex.
		{pkix.Name{CommonName: "x", ExtraNames: []pkix.AttributeTypeAndValue{{Type: []int{1, 2, 840, 113549, 1, 9, 1}, Value: "a@b"}}},
			"1.2.840.113549.1.9.1=#0c03614062,CN=x"},
	} {
		der, err := asn1.Marshal(tc.name.ToRDNSequence())
		if err != nil {
			t.Fatal(err)
		}
		got, err := DistinguishedName(der)
		if err != nil || got != tc.want {
			t.Errorf("DN of %v = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := DistinguishedName([]byte{0x30, 0x05, 1}); err == nil {
		t.Error("a truncated name parsed")
	}
}

// TestSASLWithACLs: the SASL user is the principal the authorizer decides
// on, and managing SCRAM users needs ALTER (DESCRIBE to list) on the
// cluster.
func TestSASLWithACLs(t *testing.T) {
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	_, _, addrs := authBrokerOpts(t, t.TempDir(), Options{UsersFile: users, ACL: true, SuperUsers: []string{"User:alice"}},
		ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext})
	alice := kadm.NewClient(newKgo(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, "alice", "alice-secret"))))
	bob := kadm.NewClient(newKgo(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, "bob", "bob-secret"))))
	// A fresh slice per call: kadm fills in the salt it makes.
	add := func() []kadm.UpsertSCRAM {
		return []kadm.UpsertSCRAM{{User: "eve", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "eve-secret"}}
	}
	// kadm turns the per-user code into its error.
	if _, err := bob.AlterUserSCRAMs(ctxT(t), nil, add()); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob adding a user: %v; want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	if _, err := bob.DescribeUserSCRAMs(ctxT(t)); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob listing users: %v; want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	if res, err := alice.AlterUserSCRAMs(ctxT(t), nil, add()); err != nil || res.Error() != nil {
		t.Fatalf("alice (super user) adding a user: %v %v", err, res.Error())
	}
	if _, err := alice.CreateTopic(ctxT(t), 1, 1, nil, "acl-t"); err != nil {
		t.Fatal(err)
	}
	prod := newKgo(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA256, "eve", "eve-secret")), kgo.DefaultProduceTopic("acl-t"))
	err := prod.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("eve producing without an ACL: %v; want TOPIC_AUTHORIZATION_FAILED", err)
	}
}

// kcatRun runs kcat (librdkafka) with args and returns its combined output
// and error. Skips the test where kcat is not installed.
func kcatRun(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	cmd := exec.CommandContext(ctxT(t), kcat, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kcatMetadataTimeout bounds how long kcat waits for metadata when a login
// is refused (it keeps retrying until then); long enough for a loaded CI
// machine to log in when the password is right.
const kcatMetadataTimeout = "5"

// TestSASLKcat logs in with librdkafka for each mechanism: the right
// password lists metadata and produces and consumes; a wrong password and
// an unknown user are refused.
func TestSASLKcat(t *testing.T) {
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	_, seen, addrs := authBroker(t, t.TempDir(), users, ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext})
	admin := newKgo(t, addrs[0], kgo.SASL(mechanism(MechSCRAMSHA512, "alice", "alice-secret")))
	createTopic(t, admin, "rd", 1)
	sasl := func(mech, user, pass string) []string {
		return []string{"-b", addrs[0], "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=" + mech,
			"-X", "sasl.username=" + user, "-X", "sasl.password=" + pass}
	}
	for _, mech := range Mechanisms {
		t.Run(mech, func(t *testing.T) {
			args := sasl(mech, "alice", "alice-secret")
			if out, err := kcatRun(t, mech+"\n", append(args, "-t", "rd", "-P", "-X", "acks=all")...); err != nil {
				t.Fatalf("kcat produce with %s: %v\n%s", mech, err, out)
			}
			out, err := kcatRun(t, "", append(args, "-t", "rd", "-C", "-e", "-q")...)
			if err != nil || !strings.Contains(out, mech+"\n") {
				t.Fatalf("kcat consume with %s: %v\n%s", mech, err, out)
			}
			// Both at once: kcat waits out its metadata timeout when refused.
			var wg sync.WaitGroup
			for _, bad := range []struct{ user, pass string }{{"alice", "wrong"}, {"nobody", "alice-secret"}} {
				wg.Go(func() {
					out, err := kcatRun(t, "", append(sasl(mech, bad.user, bad.pass), "-L", "-m", kcatMetadataTimeout)...)
					if err == nil || !strings.Contains(out, "Authentication failed") {
						t.Errorf("kcat as %s/%s with %s: %v\n%s\nwant a refused login", bad.user, bad.pass, mech, err, out)
					}
				})
			}
			wg.Wait()
		})
	}
	if !seen.has("User:alice") {
		t.Fatalf("principals %v lack User:alice", seen.seen)
	}
}

// TestMTLSKcat: librdkafka with a certificate from the client CA is served
// (and named by its subject); without one, or with one from another CA,
// the handshake fails.
func TestMTLSKcat(t *testing.T) {
	s := newMTLS(t)
	tlsArgs := func(cert [2]string) []string {
		args := []string{"-b", s.ssl, "-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + s.caFile}
		if cert[0] != "" {
			args = append(args, "-X", "ssl.certificate.location="+cert[0], "-X", "ssl.key.location="+cert[1])
		}
		return args
	}
	out, err := kcatRun(t, "", append(tlsArgs(s.alice), "-L", "-m", kcatMetadataTimeout)...)
	if err != nil || !strings.Contains(out, "broker") {
		t.Fatalf("kcat with alice's certificate: %v\n%s", err, out)
	}
	if !s.seen.has(s.aliceDN) {
		t.Fatalf("principals %v lack %s", s.seen.seen, s.aliceDN)
	}
	var wg sync.WaitGroup
	for name, cert := range map[string][2]string{"no certificate": {}, "another CA": s.mallory} {
		wg.Go(func() {
			if out, err := kcatRun(t, "", append(tlsArgs(cert), "-L", "-m", kcatMetadataTimeout)...); err == nil {
				t.Errorf("kcat with %s listed metadata:\n%s", name, out)
			}
		})
	}
	wg.Wait()
	// SASL_SSL: the certificate and a SCRAM login; the SASL user wins.
	out, err = kcatRun(t, "", "-b", s.saslSSL, "-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location="+s.caFile,
		"-X", "ssl.certificate.location="+s.alice[0], "-X", "ssl.key.location="+s.alice[1],
		"-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=bob", "-X", "sasl.password=bob-secret", "-L", "-m", kcatMetadataTimeout)
	if err != nil || !s.seen.has("User:bob") {
		t.Fatalf("kcat over SASL_SSL as bob: %v (principals %v)\n%s", err, s.seen.seen, out)
	}
}

// TestSCRAMDoubledNonce: the client-final message of librdkafka before
// 2.6.1 (client nonce repeated before the combined nonce) logs in with the
// right password only, and a nonce missing the server's part never does.
func TestSCRAMDoubledNonce(t *testing.T) {
	dir := t.TempDir()
	users, err := openUsers(dir, writeFile(t, dir, "users.yaml", testUsers))
	if err != nil {
		t.Fatal(err)
	}
	final := func(nonce func(cnonce, combined string) string, pw string) (*saslSession, error) {
		s := newSASLSession(users, MechSCRAMSHA256)
		const cnonce = "{=EVbtIJ<pvtRPgR7>2mC]ISGKdfFH/8" // librdkafka's alphabet includes '='
		c1b := "n=alice,r=" + cnonce
		s1, err := s.step([]byte("n,," + c1b))
		if err != nil {
			t.Fatal(err)
		}
		combined, _ := scramField(string(s1), "r")
		salt64, _ := scramField(string(s1), "s")
		salt, _ := base64.StdEncoding.DecodeString(salt64)
		salted, err := saltPassword(MechSCRAMSHA256, pw, salt, seedIterations)
		if err != nil {
			t.Fatal(err)
		}
		wop := "c=biws,r=" + nonce(cnonce, combined)
		mac := hmac.New(sha256.New, salted)
		mac.Write([]byte("Client Key"))
		clientKey := mac.Sum(nil)
		stored := sha256.Sum256(clientKey)
		mac = hmac.New(sha256.New, stored[:])
		mac.Write([]byte(c1b + "," + string(s1) + "," + wop))
		proof := mac.Sum(nil)
		for i := range proof {
			proof[i] ^= clientKey[i]
		}
		_, err = s.step([]byte(wop + ",p=" + base64.StdEncoding.EncodeToString(proof)))
		return s, err
	}
	doubled := func(c, comb string) string { return c + comb }
	if s, err := final(doubled, "alice-secret"); err != nil || !s.done {
		t.Fatalf("librdkafka's doubled nonce with the right password: %v", err)
	}
	if _, err := final(doubled, "wrong"); err == nil {
		t.Fatal("doubled nonce with a wrong password logged in")
	}
	if _, err := final(func(c, _ string) string { return c + c }, "alice-secret"); err == nil {
		t.Fatal("a nonce without the server's part logged in")
	}
	if s, err := final(func(_, comb string) string { return comb }, "alice-secret"); err != nil || !s.done {
		t.Fatalf("the standard nonce: %v", err)
	}
}

// readTokenFrame reads one length-prefixed frame, waiting at most 10s.
func readTokenFrame(nc net.Conn) ([]byte, error) {
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(nc, buf)
	return buf, err
}

// legacyLogin logs in as old clients do: SaslHandshake v0, then bare SASL
// tokens without Kafka framing.
func legacyLogin(t *testing.T, addr string, mech sasl.Mechanism) (net.Conn, error) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	var f kmsg.RequestFormatter
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 0, mech.Name()
	if _, err := nc.Write(f.AppendRequest(nil, hs, 1)); err != nil {
		t.Fatal(err)
	}
	frame, err := readTokenFrame(nc)
	if err != nil {
		t.Fatalf("SaslHandshake v0: %v", err)
	}
	resp := kmsg.NewPtrSASLHandshakeResponse()
	if err := resp.ReadFrom(frame[4:]); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("SaslHandshake v0 answered %v, code %d", err, resp.ErrorCode)
	}
	sess, msg, err := mech.Authenticate(ctxT(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(msg)))); err != nil {
			return nc, err
		}
		if _, err := nc.Write(msg); err != nil {
			return nc, err
		}
		token, err := readTokenFrame(nc)
		if err != nil {
			return nc, err
		}
		done, next, err := sess.Challenge(token)
		if err != nil || done {
			return nc, err
		}
		msg = next
	}
}

// TestSASLHandshakeV0 logs in with SaslHandshake v0's bare tokens (PLAIN
// and SCRAM), is then served, and is closed without a reply after a wrong
// password.
func TestSASLHandshakeV0(t *testing.T) {
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	_, seen, addrs := authBroker(t, t.TempDir(), users, ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext})
	for _, mech := range Mechanisms {
		nc, err := legacyLogin(t, addrs[0], mechanism(mech, "alice", "alice-secret"))
		if err != nil {
			t.Fatalf("%s v0 login: %v", mech, err)
		}
		var f kmsg.RequestFormatter
		md := kmsg.NewPtrMetadataRequest()
		md.Version = 1
		if _, err := nc.Write(f.AppendRequest(nil, md, 2)); err != nil {
			t.Fatal(err)
		}
		if _, err := readTokenFrame(nc); err != nil {
			t.Fatalf("metadata after a %s v0 login: %v", mech, err)
		}
		if _, err := legacyLogin(t, addrs[0], mechanism(mech, "alice", "wrong")); err == nil {
			t.Fatalf("%s v0 login with a wrong password succeeded", mech)
		}
	}
	if !seen.has("User:alice") {
		t.Fatalf("principals %v lack User:alice", seen.seen)
	}
}

// TestAdvertisedHostPerListener: a listener with AdvertisedHost tells its
// clients that host with its own port, whatever Options.AdvertisedAddr
// says for the others.
func TestAdvertisedHostPerListener(t *testing.T) {
	users := writeFile(t, t.TempDir(), "users.yaml", testUsers)
	_, _, addrs := authBrokerOpts(t, t.TempDir(), Options{UsersFile: users, AdvertisedAddr: "plain.example:9092"},
		ListenerConfig{Addr: "127.0.0.1:0"},
		ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext, AdvertisedHost: "sasl.example"})
	_, port, _ := net.SplitHostPort(addrs[1])
	for i, want := range []string{"plain.example:9092", "sasl.example:" + port} {
		opts := []kgo.Opt{}
		if i == 1 {
			opts = append(opts, kgo.SASL(mechanism(MechSCRAMSHA512, "bob", "bob-secret")))
		}
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctxT(t), newKgo(t, addrs[i], opts...))
		if err != nil {
			t.Fatal(err)
		}
		if got := net.JoinHostPort(resp.Brokers[0].Host, strconv.Itoa(int(resp.Brokers[0].Port))); got != want {
			t.Errorf("listener %d advertises %s; want %s", i, got, want)
		}
	}
	b, err := Open(t.TempDir(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.ListenWith(ListenerConfig{Addr: "127.0.0.1:0", AdvertisedHost: "host:9092"}); err == nil || !strings.Contains(err.Error(), "without a port") {
		t.Errorf("an advertised host with a port: %v", err)
	}
}
