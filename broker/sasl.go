package broker

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/xdg-go/scram"
)

const (
	// maxSASLReceiveBytes caps a request frame on a SASL listener before
	// authentication, as Kafka's sasl.server.max.receive.size (512 KiB)
	// does: a client that has not logged in cannot make the broker
	// allocate more than this.
	maxSASLReceiveBytes = 512 << 10

	// authLogInterval spaces out the warnings of failed logins: one line
	// per interval with the count of those left out, so a password-guessing
	// client cannot flood the log.
	authLogInterval = time.Second
)

// authFailure is a login that did not succeed: what the client is told
// (Kafka's wording) and why, for the log.
type authFailure struct {
	client, reason string
}

func (e *authFailure) Error() string { return e.reason }

func failure(client, format string, args ...any) *authFailure {
	return &authFailure{client: client, reason: fmt.Sprintf(format, args...)}
}

// saslSession is one login attempt with one mechanism: the server side of
// the SASL exchange, independent of the connection so it can be fuzzed.
type saslSession struct {
	users *userStore
	mech  string
	conv  *scram.ServerConversation // SCRAM mechanisms
	// user is who the client claims to be, once it said so; authenticated
	// once done.
	user  string
	done  bool
	steps int // messages taken
	// legacy: the handshake was v0, so tokens come bare (conn.readLoop).
	legacy bool
	// c1 and s1 are the SCRAM client-first and server-first messages,
	// for doubledNonce.
	c1, s1 string
}

func newSASLSession(users *userStore, mech string) *saslSession {
	s := &saslSession{users: users, mech: mech}
	if h := scramHashFcn(mech); h != nil {
		srv, _ := h.NewServer(func(name string) (scram.StoredCredentials, error) {
			cred, _ := users.scram(mech, name)
			return scram.StoredCredentials{
				KeyFactors: scram.KeyFactors{Salt: string(cred.Salt), Iters: cred.Iterations},
				StoredKey:  cred.StoredKey, ServerKey: cred.ServerKey,
			}, nil
		})
		s.conv = srv.NewConversation()
	}
	return s
}

func scramHashFcn(mech string) scram.HashGeneratorFcn {
	switch mech {
	case MechSCRAMSHA256:
		return scram.SHA256
	case MechSCRAMSHA512:
		return scram.SHA512
	}
	return nil
}

// step takes one client message and returns the server's answer. A
// non-nil error is a failed login (*authFailure); done says the client is
// authenticated as s.user.
func (s *saslSession) step(in []byte) (out []byte, err error) {
	if s.done {
		return nil, failure("Authentication failed: the login is already complete", "message after the login completed")
	}
	if s.mech == MechPlain {
		return nil, s.plain(in)
	}
	if s.conv == nil || s.conv.Done() {
		return nil, failure("Authentication failed: unexpected SASL message", "message after the exchange ended")
	}
	first := s.steps == 0
	s.steps++
	resp, err := s.conv.Step(string(in))
	if first && s.conv.Username() != "" {
		s.user = s.conv.Username()
	}
	if err != nil {
		if first {
			return nil, failure("Authentication failed: invalid SCRAM client-first message", "malformed SCRAM client-first message: %v", err)
		}
		v, form, ok := s.doubledNonce(string(in))
		if ok {
			s.done = true
			return []byte(v), nil
		}
		reason := err.Error()
		if form {
			reason = "invalid proof" // the library's complaint was the doubled nonce
		}
		return nil, failure("Authentication failed during authentication due to invalid credentials with SASL mechanism "+s.mech, "%s", s.why(reason))
	}
	if first {
		s.c1, s.s1 = string(in), resp
		if az := s.conv.AuthzID(); az != "" && az != s.user {
			return nil, failure("Authentication failed: Client requested an authorization id that is different from username",
				"authorization id %q differs from the user name", az)
		}
		return []byte(resp), nil
	}
	if !s.conv.Valid() {
		return nil, failure("Authentication failed during authentication due to invalid credentials with SASL mechanism "+s.mech, "%s", s.why("invalid proof"))
	}
	if _, known := s.users.scram(s.mech, s.user); !known {
		// Unreachable with a made-up credential; kept so an unknown user
		// can never log in whatever the SCRAM library does.
		return nil, failure("Authentication failed during authentication due to invalid credentials with SASL mechanism "+s.mech, "unknown user")
	}
	s.done = true
	return []byte(resp), nil
}

// why says, for the log only, whether a failed SCRAM login named a user
// without this mechanism's credential; the client is told the same either
// way, so user names cannot be probed.
func (s *saslSession) why(reason string) string {
	if _, known := s.users.scram(s.mech, s.user); !known {
		return "unknown user, or no " + s.mech + " credential for it"
	}
	return reason + " (wrong password)"
}

// plain checks a PLAIN message: [authzid] NUL authcid NUL password.
func (s *saslSession) plain(in []byte) error {
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 {
		return failure("Authentication failed: Invalid SASL/PLAIN response: expected 3 tokens", "malformed PLAIN message")
	}
	authz, user, password := string(parts[0]), string(parts[1]), string(parts[2])
	s.user = user
	if user == "" || password == "" {
		return failure("Authentication failed: username or password not specified", "empty user name or password")
	}
	if authz != "" && authz != user {
		return failure("Authentication failed: Client requested an authorization id that is different from username",
			"authorization id %q differs from the user name", authz)
	}
	if !s.users.checkPlain(user, password) {
		return failure("Authentication failed: Invalid username or password", "%s", s.users.plainRefusal(user))
	}
	s.done = true
	return nil
}

// preAuthAPI reports the requests a SASL listener serves before login.
func preAuthAPI(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return true
	}
	return false
}

// needsLogin reports a connection on a SASL listener that has not logged in.
func (c *conn) needsLogin() bool { return c.security.usesSASL() && !c.authenticated }

func handleSASLHandshake(r *request) reply {
	req := r.msg.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = Mechanisms
	c := r.c
	switch {
	case !c.needsLogin() || c.sasl != nil:
		// Not a SASL listener, already logged in (re-authentication,
		// KIP-368, is not offered: session lifetimes are 0) or a second
		// handshake.
		resp.ErrorCode = kerr.IllegalSaslState.Code
		c.closeAfterReply = fmt.Sprintf("SaslHandshake not expected on this %s connection", c.security)
	case scramHashFcn(req.Mechanism) == nil && req.Mechanism != MechPlain:
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.b.authFailed(c, req.Mechanism, "", fmt.Sprintf("unsupported mechanism %q", req.Mechanism))
		c.closeAfterReply = "unsupported SASL mechanism"
	default:
		c.sasl = newSASLSession(c.b.users, req.Mechanism)
		c.sasl.legacy = req.Version == 0
	}
	return respond(resp)
}

func handleSASLAuthenticate(r *request) reply {
	req := r.msg.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	c := r.c
	if !c.needsLogin() || c.sasl == nil || c.sasl.legacy {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate is only expected after a SaslHandshake v1 on a SASL listener, before login"
		resp.ErrorMessage = &msg
		c.closeAfterReply = "SaslAuthenticate out of sequence"
		return respond(resp)
	}
	out, err := c.sasl.step(req.SASLAuthBytes)
	if err != nil {
		var f *authFailure
		if !errors.As(err, &f) {
			f = failure("Authentication failed", "%v", err)
		}
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = &f.client
		c.b.authFailed(c, c.sasl.mech, c.sasl.user, f.reason)
		c.closeAfterReply = "authentication failed"
		return respond(resp)
	}
	resp.SASLAuthBytes = out
	if c.sasl.done {
		c.loggedIn()
	}
	return respond(resp)
}

// legacyToken takes a bare SASL token sent after SaslHandshake v0 and
// returns the bare reply to queue; false means the login failed and the
// connection closes without a reply.
func (c *conn) legacyToken(token []byte) (queued, bool) {
	out, err := c.sasl.step(token)
	if err != nil {
		c.b.authFailed(c, c.sasl.mech, c.sasl.user, err.Error())
		return queued{}, false
	}
	if c.sasl.done {
		c.loggedIn()
	}
	req := &request{c: c, key: int16(kmsg.SASLAuthenticate)}
	return queued{req: req, reply: func() *outgoing { return &outgoing{raw: true, token: out} }, read: time.Now()}, true
}

// loggedIn makes the SASL identity the connection's principal.
func (c *conn) loggedIn() {
	c.authenticated = true
	c.principal = "User:" + c.sasl.user
	c.b.metrics.authentications.WithLabelValues(c.sasl.mech, "ok").Inc()
	c.log.Debug("client authenticated", "user", c.sasl.user, "mechanism", c.sasl.mech)
	if h := c.b.testHookLogin; h != nil {
		h(c.principal)
	}
}

// authLimiter lets one failed-login warning through per authLogInterval
// and counts those it holds back.
type authLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *authLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < authLogInterval {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// authFailed counts a failed login and logs it, rate-limited.
func (b *Broker) authFailed(c *conn, mech, user, reason string) {
	if mech == "" {
		mech = "unknown"
	}
	b.metrics.authentications.WithLabelValues(metricMechanism(mech), "failed").Inc()
	if ok, suppressed := b.authLog.allow(time.Now()); ok {
		// What the client claimed is logged, cut short: it may be anything.
		attrs := []any{"remote", c.nc.RemoteAddr().String(), "user", clip(user), "mechanism", clip(mech), "reason", clip(reason)}
		if suppressed > 0 {
			attrs = append(attrs, "suppressed", suppressed)
		}
		b.log.Warn("authentication failed; closing connection", attrs...)
	}
}

// maxLoggedClaimBytes bounds a client-supplied string in a log line (a
// user name of up to maxSASLReceiveBytes could otherwise fill it).
const maxLoggedClaimBytes = 256

func clip(s string) string {
	if len(s) <= maxLoggedClaimBytes {
		return s
	}
	return s[:maxLoggedClaimBytes] + "…"
}

// metricMechanism keeps the metric's label values few whatever a client
// names.
func metricMechanism(mech string) string {
	switch mech {
	case MechPlain, MechSCRAMSHA256, MechSCRAMSHA512, "TLS":
		return mech
	}
	return "other"
}

// doubledNonce (form reports whether c2 has the doubled nonce at all)
// accepts the client-final message of librdkafka before 2.6.1
// (Debian and Ubuntu ship 2.0 to 2.3), which repeats its own nonce in
// front of the combined nonce the server sent: r = client nonce + client
// nonce + server nonce. Kafka 3.x accepted that; so does this broker, and
// only that: the server's nonce must be there whole (the replay protection
// RFC 5802 asks for), and the proof is checked over the message as sent.
// It returns the server-final message.
func (s *saslSession) doubledNonce(c2 string) (resp string, form, ok bool) {
	gs2, c1b, ok := splitGS2(s.c1)
	if !ok {
		return "", false, false
	}
	cnonce, ok1 := scramField(c1b, "r")
	combined, ok2 := scramField(s.s1, "r")
	p := strings.LastIndex(c2, ",p=")
	if !ok1 || !ok2 || p < 0 {
		return "", false, false
	}
	wop, proofB64 := c2[:p], c2[p+len(",p="):]
	fields := strings.Split(wop, ",")
	if len(fields) != 2 || fields[0] != "c="+base64.StdEncoding.EncodeToString([]byte(gs2)) || fields[1] != "r="+cnonce+combined {
		return "", false, false
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil {
		return "", true, false
	}
	cred, known := s.users.scram(s.mech, s.user)
	h := scramHash(s.mech)
	authMsg := []byte(c1b + "," + s.s1 + "," + wop)
	mac := hmac.New(h, cred.StoredKey)
	mac.Write(authMsg)
	sig := mac.Sum(nil)
	if len(proof) != len(sig) {
		return "", true, false
	}
	for i := range sig {
		sig[i] ^= proof[i] // now the client key
	}
	sum := h()
	sum.Write(sig)
	if !hmac.Equal(sum.Sum(nil), cred.StoredKey) || !known {
		return "", true, false
	}
	mac = hmac.New(h, cred.ServerKey)
	mac.Write(authMsg)
	return "v=" + base64.StdEncoding.EncodeToString(mac.Sum(nil)), true, true
}

// splitGS2 splits a SCRAM client-first message into its GS2 header
// ("n,," or "n,a=NAME,", channel binding "n" only) and the bare message.
func splitGS2(c1 string) (gs2, bare string, ok bool) {
	if !strings.HasPrefix(c1, "n,") {
		return "", "", false
	}
	i := strings.IndexByte(c1[2:], ',')
	if i < 0 {
		return "", "", false
	}
	return c1[:2+i+1], c1[2+i+1:], true
}

// scramField returns the value of the attribute key in a SCRAM message.
func scramField(msg, key string) (string, bool) {
	for _, f := range strings.Split(msg, ",") {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v, true
		}
	}
	return "", false
}
