package broker

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestACLSCRAMPrincipals: real principals from SCRAM logins. The super user
// admin grants alice produce, consume and her group through kadm; bob,
// authenticated too but named by no ACL, is refused each with Kafka's code
// while alice is served; kcat (librdkafka) logs in as each of them.
func TestACLSCRAMPrincipals(t *testing.T) {
	users := writeFile(t, t.TempDir(), "users.yaml", `
- name: admin
  password: admin-secret
- name: alice
  password: alice-secret
- name: bob
  password: bob-secret
`)
	b, err := Open(t.TempDir(), Options{Logger: testLogger(t), UsersFile: users, ACL: true, SuperUsers: []string{"User:admin"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := b.ListenWith(ListenerConfig{Addr: "127.0.0.1:0", Security: SASLPlaintext})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	as := func(user string, opts ...kgo.Opt) *kgo.Client {
		return newKgo(t, addr, append(opts, kgo.SASL(scram.Auth{User: user, Pass: user + "-secret"}.AsSha256Mechanism()))...)
	}
	ctx := ctxT(t)
	admin := as("admin")
	createTopic(t, admin, "orders", 1)
	adm := kadm.NewClient(admin)
	res, err := adm.CreateACLs(ctx, kadm.NewACLs().Topics("orders").Groups("g").Allow("User:alice").
		Operations(kadm.OpRead, kadm.OpWrite))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		// WRITE on a group is not an operation groups have, but Kafka
		// accepts it as an ACL all the same; so does this broker.
		if r.Err != nil {
			t.Fatalf("create %s %s: %v", r.Name, r.Operation, r.Err)
		}
	}

	alice, bob := as("alice"), as("bob", kgo.RecordRetries(2))
	if err := produceTo(ctx, bob, "orders", "bob"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob's produce: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if err := produceTo(ctx, alice, "orders", "a1", "a2"); err != nil {
		t.Fatalf("alice's produce: %v", err)
	}
	cons := as("alice", kgo.ConsumerGroup("g"), kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for n := 0; n < 2; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("alice consumes in group g: %v", err)
		}
		n += fs.NumRecords()
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("alice commits: %v", err)
	}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = "g", "consumer", 10000, 10000
	join.Protocols = append(join.Protocols, kmsg.JoinGroupRequestProtocol{Name: "range"})
	if resp, err := join.RequestWith(ctx, direct(t, bob)); err != nil || resp.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("bob joins g: %v %+v", err, resp)
	}
	if md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, bob); err != nil || len(md.Topics) != 0 {
		t.Fatalf("bob lists topics: %v %+v", err, md)
	}
	// Users and ACLs are the cluster's: bob may neither list nor change
	// them, admin may.
	if _, err := kadm.NewClient(bob).DescribeUserSCRAMs(ctx); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob lists SCRAM users: %v", err)
	}
	if u, err := adm.DescribeUserSCRAMs(ctx); err != nil || len(u) != 3 {
		t.Fatalf("admin lists SCRAM users: %v %v", err, u)
	}
	if res, err := kadm.NewClient(bob).CreateACLs(ctx, kadm.NewACLs().Topics("orders").Allow("User:bob").Operations(kadm.OpAll)); err != nil ||
		!errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob grants himself: %v %v", err, res)
	}

	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Log("kcat not installed: librdkafka part skipped")
		return
	}
	consume := func(user string) (string, error) {
		cmd := exec.CommandContext(ctx, kcat, "-b", addr, "-t", "orders", "-C", "-e", "-q",
			"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512",
			"-X", "sasl.username="+user, "-X", "sasl.password="+user+"-secret")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := consume("alice"); err != nil || out != "a1\na2\n" {
		t.Fatalf("kcat as alice: %v\n%s", err, out)
	}
	if out, err := consume("bob"); err == nil || !strings.Contains(out, "authorization failed") {
		t.Fatalf("kcat as bob: %v\n%s", err, out)
	}
}

// TestACLCertificatePrincipals: on an mTLS listener the principal is the
// certificate's subject (User:CN=...), and ACLs name it as Kafka's do.
func TestACLCertificatePrincipals(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir, "ca")
	srvCert, srvKey := pki.issue(t, "server", pkix.Name{CommonName: "broker"}, true)
	client := func(cn string) *tls.Config {
		cert, key := pki.issue(t, cn, pkix.Name{CommonName: cn, Organization: []string{"Example"}}, false)
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(pki.ca)
		return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	}
	srvTLS, err := ServerTLS(srvCert, srvKey, filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(t.TempDir(), Options{Logger: testLogger(t), ACL: true, SuperUsers: []string{"User:CN=admin,O=Example"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := b.ListenWith(ListenerConfig{Addr: "127.0.0.1:0", Security: SSL, TLS: srvTLS})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	ctx := ctxT(t)
	admin := newKgo(t, addr, kgo.DialTLSConfig(client("admin")))
	createTopic(t, admin, "tls", 1)
	res, err := kadm.NewClient(admin).CreateACLs(ctx, kadm.NewACLs().Topics("tls").Allow("User:CN=alice,O=Example").Operations(kadm.OpWrite))
	if err != nil || res[0].Err != nil {
		t.Fatalf("admin grants alice: %v %v", err, res)
	}
	if err := produceTo(ctx, newKgo(t, addr, kgo.DialTLSConfig(client("alice"))), "tls", "v"); err != nil {
		t.Fatalf("alice (by certificate) produces: %v", err)
	}
	carol := newKgo(t, addr, kgo.DialTLSConfig(client("carol")), kgo.RecordRetries(2))
	if err := produceTo(ctx, carol, "tls", "v"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("carol (by certificate) produces: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}
