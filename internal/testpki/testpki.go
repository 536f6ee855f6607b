// Package testpki makes throwaway certificate authorities and the
// certificates they sign, for tests of TLS listeners and clients: as PEM
// files (what the CLI, pipeline files and librdkafka read) and as the
// parsed pieces a tls.Config takes. It imports only the standard library,
// so the tests of any package, the broker's included, can use it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// validity is how far before and after now every certificate is valid: an
// hour each way outlasts any test and tolerates a clock slightly off.
const validity = time.Hour

// CA is a certificate authority that signs certificates for tests.
type CA struct {
	File string         // its certificate, PEM: dir/NAME.pem
	Pool *x509.CertPool // holding only its certificate
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Pair is a certificate and its private key.
type Pair struct {
	CertFile, KeyFile string // PEM: dir/NAME.pem, dir/NAME-key.pem
	TLS               tls.Certificate
}

// NewCA makes a CA whose subject is CN=name and writes its certificate to
// dir/name.pem; the certificates it issues are written under dir too.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-validity), NotAfter: time.Now().Add(validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{File: filepath.Join(dir, name+".pem"), Pool: x509.NewCertPool(), dir: dir, cert: cert, key: key}
	ca.Pool.AddCert(cert)
	writePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// Server issues a server certificate for 127.0.0.1 and localhost with
// subject CN=cn, written as name.pem and name-key.pem.
func (ca *CA) Server(t testing.TB, name, cn string) Pair {
	t.Helper()
	return ca.Issue(t, name, pkix.Name{CommonName: cn}, x509.ExtKeyUsageServerAuth)
}

// Client issues a client certificate with the given subject (mTLS makes
// the principal of it), written as name.pem and name-key.pem.
func (ca *CA) Client(t testing.TB, name string, subject pkix.Name) Pair {
	t.Helper()
	return ca.Issue(t, name, subject, x509.ExtKeyUsageClientAuth)
}

// Issue signs a certificate for subject with the given use, written as
// name.pem and name-key.pem (PKCS #8); a server certificate is for
// 127.0.0.1 and localhost.
func (ca *CA) Issue(t testing.TB, name string, subject pkix.Name, usage x509.ExtKeyUsage) Pair {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: subject,
		NotBefore: time.Now().Add(-validity), NotAfter: time.Now().Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := Pair{CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+"-key.pem"),
		TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}
	writePEM(t, p.CertFile, "CERTIFICATE", der)
	writePEM(t, p.KeyFile, "PRIVATE KEY", keyDER)
	return p
}

// PKI is the usual set: a CA, a server certificate (CN=broker) and a
// client certificate (CN=client) it signed.
type PKI struct {
	CA                    string // the CA's certificate file
	ServerCert, ServerKey string // files
	ClientCert, ClientKey string // files
	Pool                  *x509.CertPool
	Server                tls.Certificate
	Client                tls.Certificate
}

// New writes a CA (ca.pem), a server certificate (server.pem,
// server-key.pem) and a client certificate (client.pem, client-key.pem)
// under dir.
func New(t testing.TB, dir string) *PKI {
	t.Helper()
	ca := NewCA(t, dir, "ca")
	srv := ca.Server(t, "server", "broker")
	cl := ca.Client(t, "client", pkix.Name{CommonName: "client"})
	return &PKI{CA: ca.File, ServerCert: srv.CertFile, ServerKey: srv.KeyFile,
		ClientCert: cl.CertFile, ClientKey: cl.KeyFile, Pool: ca.Pool, Server: srv.TLS, Client: cl.TLS}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// serial is random, so certificates of one CA never share a serial number.
func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
