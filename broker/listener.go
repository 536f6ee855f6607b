package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
	"unicode/utf16"
)

// SecurityProtocol is the kind of a listener, named as Kafka's
// security.protocol values so client settings carry over unchanged.
type SecurityProtocol string

const (
	// Plaintext serves anyone who connects, as User:ANONYMOUS.
	Plaintext SecurityProtocol = "PLAINTEXT"
	// SSL is TLS; with client certificates required (ServerTLS with a
	// client CA) the principal is the certificate's subject.
	SSL SecurityProtocol = "SSL"
	// SASLPlaintext serves only ApiVersions, SaslHandshake and
	// SaslAuthenticate until the client authenticates.
	SASLPlaintext SecurityProtocol = "SASL_PLAINTEXT"
	// SASLSSL is SASL over TLS; the SASL identity is the principal even
	// when a client certificate was verified too.
	SASLSSL SecurityProtocol = "SASL_SSL"
)

// SecurityProtocols lists every listener kind, for flag help and checks.
var SecurityProtocols = []SecurityProtocol{Plaintext, SSL, SASLPlaintext, SASLSSL}

func (p SecurityProtocol) usesTLS() bool  { return p == SSL || p == SASLSSL }
func (p SecurityProtocol) usesSASL() bool { return p == SASLPlaintext || p == SASLSSL }

func (p SecurityProtocol) valid() bool {
	for _, q := range SecurityProtocols {
		if p == q {
			return true
		}
	}
	return false
}

// ListenerConfig describes one listener: where, of which kind, and the TLS
// configuration an SSL or SASL_SSL listener needs (see ServerTLS).
type ListenerConfig struct {
	// Addr is host:port. The host must be written: "0.0.0.0:9092" for
	// every interface, "127.0.0.1:9092" for this machine; ":9092" is
	// refused so a listener is never opened to the network by accident.
	// Port 0 picks a free port.
	Addr string
	// Security is the listener's kind (default Plaintext).
	Security SecurityProtocol
	// TLS is required for SSL and SASL_SSL and must be nil otherwise.
	// With ClientAuth tls.RequireAndVerifyClientCert, clients must present
	// a certificate that chains to ClientCAs.
	TLS *tls.Config
	// AdvertisedHost, if set, is the host this listener's clients are told
	// to connect to, with the port the listener is on (metadata). It
	// overrides Options.AdvertisedAddr, which names one host:port for
	// every listener: with several listeners behind one name, each needs
	// its own port.
	AdvertisedHost string
}

// tlsHandshakeTimeout bounds a TLS handshake, so a client that connects and
// says nothing holds a connection for seconds, not the idle timeout.
const tlsHandshakeTimeout = 10 * time.Second

// CheckListenAddr refuses a listen address without an explicit host: an
// empty host would listen on every interface, which must be asked for by
// writing 0.0.0.0 (or [::]).
func CheckListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("listen address %q: use host:port, e.g. 127.0.0.1:9092", addr)
	}
	if host == "" {
		return fmt.Errorf("listen address %q has no host: write 0.0.0.0:%s for every interface or 127.0.0.1:%s for this machine only", addr, port, port)
	}
	return nil
}

func (cfg *ListenerConfig) check() error {
	if cfg.Security == "" {
		cfg.Security = Plaintext
	}
	if !cfg.Security.valid() {
		return fmt.Errorf("listener %s: unknown security protocol %q: use one of %v", cfg.Addr, cfg.Security, SecurityProtocols)
	}
	if cfg.Security.usesTLS() && cfg.TLS == nil {
		return fmt.Errorf("%s listener %s needs a TLS certificate and key", cfg.Security, cfg.Addr)
	}
	if strings.Contains(cfg.AdvertisedHost, ":") && net.ParseIP(cfg.AdvertisedHost) == nil || strings.ContainsAny(cfg.AdvertisedHost, " /") {
		return fmt.Errorf("listener %s: advertised host %q: give a host name or IP address, without a port", cfg.Addr, cfg.AdvertisedHost)
	}
	if !cfg.Security.usesTLS() && cfg.TLS != nil {
		return fmt.Errorf("%s listener %s is not TLS: use %s or %s for a TLS listener", cfg.Security, cfg.Addr, SSL, SASLSSL)
	}
	return nil
}

// ListenWith opens a listener of the given kind and serves it in the
// background; the returned listener's Addr tells where. A SASL listener is
// refused while the broker has no users (Options.UsersFile, or
// AlterUserScramCredentials through another listener), since nobody could
// log in.
func (b *Broker) ListenWith(cfg ListenerConfig) (net.Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := CheckListenAddr(cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.Security.usesSASL() && b.users.count() == 0 {
		return nil, fmt.Errorf("%s listener %s: no SASL users, so nobody could log in: give a users file (%s FILE)", cfg.Security, cfg.Addr, b.opts.flag("sasl-users"))
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.TLS != nil {
		l = tls.NewListener(l, cfg.TLS)
	}
	// Registered before returning, so Addr and Close see it at once.
	if err := b.register(l, cfg.Security); err != nil {
		return nil, err
	}
	go func() {
		if err := b.accept(l, cfg); err != nil && !errors.Is(err, ErrClosed) {
			b.log.Error("listener stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	return l, nil
}

// ServerTLS builds a listener's TLS configuration from PEM files: the
// broker's certificate (with its chain) and key and, when clientCAFile is
// not "", the CAs that client certificates must chain to. With a client CA,
// a client without a valid certificate is refused during the handshake
// (mTLS), and on an SSL listener its principal is "User:" plus the
// certificate subject's distinguished name.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA file %s holds no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// handshakeTLS completes a TLS connection's handshake before the first
// request, so a refused client certificate is reported as such and the
// verified subject is the principal from the first request on.
func (c *conn) handshakeTLS(tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(c.ctx, tlsHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	state := tc.ConnectionState()
	if len(state.VerifiedChains) > 0 && len(state.PeerCertificates) > 0 {
		dn, err := DistinguishedName(state.PeerCertificates[0].RawSubject)
		if err != nil {
			return fmt.Errorf("client certificate subject: %w", err)
		}
		c.principal = "User:" + dn
		if h := c.b.testHookLogin; h != nil {
			h(c.principal)
		}
	}
	return nil
}

// Attribute types Java's X500Principal (and so Kafka's default principal
// builder) writes by keyword in RFC 2253 form; any other is written as its
// dotted OID and the hex of its DER value.
var dnKeywords = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.9":                    "STREET",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
}

type dnAttribute struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// dnAttributeSET is one relative distinguished name; encoding/asn1 reads a
// type whose name ends in SET as an ASN.1 SET.
type dnAttributeSET []dnAttribute

// DistinguishedName formats a DER-encoded X.509 name (a certificate's
// RawSubject) as Kafka's default principal builder does, through Java's
// X500Principal.getName(): RFC 2253, most specific part first, e.g.
// "CN=alice,OU=eng,O=Example,C=US".
func DistinguishedName(der []byte) (string, error) {
	var rdns []dnAttributeSET
	rest, err := asn1.Unmarshal(der, &rdns)
	if err != nil {
		return "", err
	}
	if len(rest) > 0 {
		return "", errors.New("trailing data after the name")
	}
	var sb strings.Builder
	for i := len(rdns) - 1; i >= 0; i-- {
		if i != len(rdns)-1 {
			sb.WriteByte(',')
		}
		for j, a := range rdns[i] {
			if j > 0 {
				sb.WriteByte('+')
			}
			kw, known := dnKeywords[a.Type.String()]
			s, isString := dnString(a.Value)
			if !known || !isString {
				name := kw
				if !known {
					name = a.Type.String()
				}
				sb.WriteString(name + "=#" + hex.EncodeToString(a.Value.FullBytes))
				continue
			}
			sb.WriteString(kw + "=" + escapeDNValue(s))
		}
	}
	return sb.String(), nil
}

// dnString decodes the directory string types a name's values use.
func dnString(v asn1.RawValue) (string, bool) {
	if v.Class != asn1.ClassUniversal {
		return "", false
	}
	switch v.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagT61String, 26 /* VisibleString */ :
		return string(v.Bytes), true
	case asn1.TagBMPString:
		if len(v.Bytes)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(v.Bytes)/2)
		for i := range u {
			u[i] = uint16(v.Bytes[2*i])<<8 | uint16(v.Bytes[2*i+1])
		}
		return string(utf16.Decode(u)), true
	}
	return "", false
}

// escapeDNValue escapes as Java's RFC 2253 output does: the special
// characters , = + < > # ; " \ anywhere, NUL as \00, and leading and
// trailing spaces.
func escapeDNValue(s string) string {
	lead := len(s) - len(strings.TrimLeft(s, " "))
	trail := len(strings.TrimRight(s, " "))
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == 0:
			sb.WriteString(`\00`)
			continue
		case strings.IndexByte(`,=+<>#;"\`, ch) >= 0, i < lead, i >= trail:
			sb.WriteByte('\\')
		}
		sb.WriteByte(ch)
	}
	return sb.String()
}
