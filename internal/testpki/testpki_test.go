package testpki_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"io"
	"testing"

	"github.com/sluicehq/sluice/internal/testpki"
)

// handshake dials a mutual-TLS listener on 127.0.0.1 that requires client
// certificates of pki's CA, presenting client, and returns the server's
// verdict on it.
func handshake(t *testing.T, pki *testpki.PKI, client tls.Certificate) error {
	t.Helper()
	srvCfg := &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	l, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	verdict := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			verdict <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = c.Write([]byte{1}) // tells the client it was accepted
		}
		verdict <- err
	}()
	// The files, as the CLI and librdkafka read them.
	pair, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil || len(pair.Certificate) != 1 {
		t.Fatalf("client files: %v", err)
	}
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pki.Pool, ServerName: "localhost",
		Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("the client refused the server certificate: %v", err)
	}
	defer c.Close()
	io.ReadFull(c, make([]byte, 1))
	return <-verdict
}

func TestMutualTLS(t *testing.T) {
	pki := testpki.New(t, t.TempDir())
	if err := handshake(t, pki, pki.Client); err != nil {
		t.Fatalf("a client certificate of the CA was refused: %v", err)
	}
	rogue := testpki.NewCA(t, t.TempDir(), "rogue").Client(t, "mallory", pkix.Name{CommonName: "client"})
	if err := handshake(t, pki, rogue.TLS); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	// The server certificate is for 127.0.0.1 as well as localhost.
	if err := pki.Server.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}
