package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/pipelines"
)

// defaultBootstrap is where the console tools look for Kafka unless told.
const defaultBootstrap = "127.0.0.1:9092"

// connectTimeout bounds the first round trip of a console tool (TCP, TLS,
// SASL and one metadata request), so a wrong address or protocol fails in
// seconds with a reason instead of being retried until Ctrl-C. Ten seconds
// is kafkaconn.DialTimeout plus room for the TLS and SASL exchanges.
const connectTimeout = 15 * time.Second

// waitRetry is how a tool given --wait tries again a broker that refused
// the connection: a broker starts in well under a second, so the first
// tries come a tenth of a second apart, and a broker that takes longer is
// tried once a second.
var waitRetry = backoff.Policy{Min: 100 * time.Millisecond, Max: time.Second}

// maxWait bounds --wait: it is for a broker starting beside the tool (a
// script that starts both), not for waiting on an outage.
const maxWait = 10 * time.Minute

// maxSecretBytes caps a password read from a file or stdin: a password is
// a line, and a larger input is a wrong file, not a password.
const maxSecretBytes = 4 << 10

// kafkaFlags are the connection flags every console tool that talks to
// Kafka shares, each defaulting to an environment variable so a shell can
// set them once. There is no flag for the password: a flag's value is
// visible to every user of the machine in ps; it comes from a file or the
// environment.
type kafkaFlags struct {
	bootstrap                                 string
	saslMechanism, saslUser, saslPasswordFile string
	tls                                       bool
	tlsCA, tlsCert, tlsKey                    string
	wait                                      time.Duration
}

// addKafkaFlags adds the connection flags to cmd and its subcommands.
func addKafkaFlags(cmd *cobra.Command) *kafkaFlags {
	k := &kafkaFlags{}
	f := cmd.PersistentFlags()
	f.StringVar(&k.bootstrap, "bootstrap", envOr("SLUICE_BOOTSTRAP", defaultBootstrap), "Kafka bootstrap address(es), comma-separated (env SLUICE_BOOTSTRAP)")
	f.StringVar(&k.saslMechanism, "sasl-mechanism", os.Getenv("SLUICE_SASL_MECHANISM"), "authenticate with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env SLUICE_SASL_MECHANISM)")
	f.StringVar(&k.saslUser, "sasl-user", os.Getenv("SLUICE_SASL_USER"), "SASL user name (env SLUICE_SASL_USER)")
	f.StringVar(&k.saslPasswordFile, "sasl-password-file", os.Getenv("SLUICE_SASL_PASSWORD_FILE"), "file whose first line is the SASL password (env SLUICE_SASL_PASSWORD_FILE; or put the password itself in env SLUICE_SASL_PASSWORD)")
	f.BoolVar(&k.tls, "tls", envBool("SLUICE_TLS"), "connect with TLS, trusting the system's CAs unless --tls-ca is given (env SLUICE_TLS=1; implied by --tls-ca and --tls-cert)")
	f.StringVar(&k.tlsCA, "tls-ca", os.Getenv("SLUICE_TLS_CA"), "PEM file of the CA(s) that signed the broker's certificate (env SLUICE_TLS_CA)")
	f.StringVar(&k.tlsCert, "tls-cert", os.Getenv("SLUICE_TLS_CERT"), "PEM client certificate, for brokers that authenticate clients by certificate (env SLUICE_TLS_CERT)")
	f.StringVar(&k.tlsKey, "tls-key", os.Getenv("SLUICE_TLS_KEY"), "PEM private key of --tls-cert (env SLUICE_TLS_KEY)")
	f.DurationVar(&k.wait, "wait", 0, "while nothing listens at --bootstrap yet (a broker still starting), try again for up to this long, e.g. 30s; 0 fails at once")
	return k
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envBool reads a boolean environment variable; anything strconv does not
// call true (unset included) is false.
func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

// settings turns the flags into the tls: and sasl: blocks a pipeline file
// would hold, so the console tools and pipelines connect by one code path
// (kafkaconn). Either may be nil.
func (k *kafkaFlags) settings() (*pipelines.TLS, *pipelines.SASL, error) {
	var t *pipelines.TLS
	if k.tls || k.tlsCA != "" || k.tlsCert != "" || k.tlsKey != "" {
		if (k.tlsCert == "") != (k.tlsKey == "") {
			return nil, nil, errors.New("give both --tls-cert and --tls-key for a client certificate, or neither")
		}
		t = &pipelines.TLS{CA: k.tlsCA, Cert: k.tlsCert, Key: k.tlsKey}
	}
	if k.saslMechanism == "" {
		if k.saslUser != "" {
			return nil, nil, errors.New("--sasl-user needs --sasl-mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
		return t, nil, nil
	}
	mech := strings.ToLower(k.saslMechanism)
	switch mech {
	case "plain", "scram-sha-256", "scram-sha-512":
	default:
		return nil, nil, fmt.Errorf("--sasl-mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.saslMechanism)
	}
	if k.saslUser == "" {
		return nil, nil, fmt.Errorf("--sasl-mechanism %s needs --sasl-user (or SLUICE_SASL_USER)", k.saslMechanism)
	}
	var pass string
	switch {
	case k.saslPasswordFile != "":
		p, err := readSecretFile(k.saslPasswordFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--sasl-password-file: %w", err)
		}
		pass = p
	case os.Getenv("SLUICE_SASL_PASSWORD") != "":
		pass = os.Getenv("SLUICE_SASL_PASSWORD")
	default:
		return nil, nil, fmt.Errorf("no password for SASL user %s: give --sasl-password-file FILE or set SLUICE_SASL_PASSWORD", k.saslUser)
	}
	if mech == "plain" && t == nil {
		slog.Warn("SASL PLAIN without --tls sends the password in clear text over the network")
	}
	return t, &pipelines.SASL{Mechanism: mech, Username: k.saslUser, Password: pass}, nil
}

// client connects to the cluster and makes one round trip, so a wrong
// address, protocol or credential is reported here in one line saying what
// to change, not as a retried request later.
func (k *kafkaFlags) client(ctx context.Context, opts ...kgo.Opt) (*kgo.Client, error) {
	t, s, err := k.settings()
	if err != nil {
		return nil, err
	}
	// franz-go logs what it retries; the tool reports the error that ends
	// it, so those lines are shown only with --log-level debug.
	log := slog.New(slog.DiscardHandler)
	if slog.Default().Enabled(ctx, slog.LevelDebug) {
		log = slog.Default()
	}
	base, err := kafkaconn.KgoOptions(splitComma(k.bootstrap), t, s, "sluice", log)
	if err != nil {
		return nil, fmt.Errorf("--bootstrap: %w", err)
	}
	if k.wait < 0 || k.wait > maxWait {
		return nil, fmt.Errorf("--wait %s: give 0 to %s", k.wait, maxWait)
	}
	deadline := time.Now().Add(k.wait)
	for tries := 1; ; tries++ {
		waited := tries > 1
		cl, err := kgo.NewClient(append(base, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("kafka client for %s: %w", k.bootstrap, err)
		}
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		err = cl.Ping(pctx)
		cancel()
		if err == nil {
			return cl, nil
		}
		cl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Only a refused connection is worth waiting for: a broker not
		// listening yet. Anything else (TLS, SASL, a timeout) would fail
		// the same way again.
		retryIn := waitRetry.Delay(tries)
		refused := errors.Is(err, syscall.ECONNREFUSED)
		if !refused || time.Now().Add(retryIn).After(deadline) {
			// A refused connection with --wait ran out of it even when
			// the first try alone used it up (a slow start on a busy
			// machine): say so, as after several tries.
			if waited || refused && k.wait > 0 {
				return nil, fmt.Errorf("no broker within --wait %s: %w", k.wait, k.explain(err))
			}
			return nil, k.explain(err)
		}
		if !waited {
			slog.Info("waiting for a broker to listen", "bootstrap", k.bootstrap, "wait", k.wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(retryIn):
		}
	}
}

// admin is client wrapped in franz-go's admin client; done closes both.
func (k *kafkaFlags) admin(ctx context.Context) (adm *kadm.Client, done func(), err error) {
	cl, err := k.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// explain turns a failure to reach the cluster into one line that says
// which flag to change. Errors it does not recognise pass through, with
// the address.
func (k *kafkaFlags) explain(err error) error {
	at := k.bootstrap
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		recordHdr tls.RecordHeaderError
		firstRead *kgo.ErrFirstReadEOF
		msg       = strings.ToLower(err.Error())
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("authentication failed at %s: check --sasl-user (%s), --sasl-mechanism (%s) and the password (--sasl-password-file or SLUICE_SASL_PASSWORD): %v", at, k.saslUser, k.saslMechanism, err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("the broker at %s does not offer --sasl-mechanism %s: %v", at, k.saslMechanism, err)
	case errors.As(err, &unknownCA), errors.As(err, &invalid):
		return fmt.Errorf("the certificate of the broker at %s is not trusted: give --tls-ca with the CA that signed it: %v", at, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("the certificate of the broker at %s is not for that name: connect by a name or address it lists: %v", at, err)
	case errors.As(err, &recordHdr):
		return fmt.Errorf("the broker at %s does not speak TLS there: drop --tls, or use the address of its TLS listener", at)
	case strings.Contains(msg, "remote error: tls:") && strings.Contains(msg, "certificate"):
		// The broker's TLS alert (bad certificate, unknown certificate
		// authority, certificate required): Go exports no type for it.
		return fmt.Errorf("the broker at %s refused the client certificate: give --tls-cert and --tls-key signed by a CA the broker trusts: %v", at, err)
	case errors.As(err, &firstRead):
		if k.tls || k.tlsCA != "" || k.tlsCert != "" {
			return fmt.Errorf("the broker at %s closed the connection at the first request: it may want SASL (--sasl-mechanism, --sasl-user), or not TLS there: %v", at, err)
		}
		return fmt.Errorf("the broker at %s closed the connection at the first request: it may want TLS (--tls, --tls-ca) or SASL (--sasl-mechanism, --sasl-user): %v", at, err)
	case errors.Is(err, io.EOF) && k.saslMechanism != "":
		// Some brokers close the connection on bad credentials instead
		// of answering SASL_AUTHENTICATION_FAILED.
		return fmt.Errorf("the broker at %s closed the connection while authenticating: check --sasl-user (%s), --sasl-mechanism (%s) and the password (--sasl-password-file or SLUICE_SASL_PASSWORD)", at, k.saslUser, k.saslMechanism)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing listens at %s: start the broker, or give its address with --bootstrap (or SLUICE_BOOTSTRAP)", at)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from %s within %s: check --bootstrap, and --tls if the listener wants TLS", at, connectTimeout)
	}
	return fmt.Errorf("connect to %s: %w", at, err)
}

// readSecretFile reads a password file: its first line, without the line
// end; an empty one is refused.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return readSecret(f, path)
}

// readSecret reads a password from r (named what in errors): up to the
// first line end, at most maxSecretBytes.
func readSecret(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("%s is over %d bytes: it should hold the password alone, on one line", what, maxSecretBytes)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s is empty: its first line is the password", what)
	}
	return line, nil
}

// splitComma splits a comma-separated list, dropping empty items.
func splitComma(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
}

// kafkaErr turns a response error code and message into an error, nil for
// 0. It wraps franz-go's error for the code, so errors.Is recognises it.
func kafkaErr(code int16, msg *string) error {
	if code == 0 {
		return nil
	}
	known := kerr.ErrorForCode(code)
	name := fmt.Sprintf("error code %d", code)
	if e := kerr.TypedErrorForCode(code); e != nil {
		name = e.Message
	}
	if msg != nil && *msg != "" {
		return &codeError{known, name + ": " + *msg}
	}
	return known
}

// codeError is a Kafka error code with the broker's own message.
type codeError struct {
	code error
	text string
}

func (e *codeError) Error() string { return e.text }
func (e *codeError) Unwrap() error { return e.code }

// withHint adds to an authorization failure what to do about it.
func withHint(err error) error {
	for _, denied := range []error{kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed} {
		if errors.Is(err, denied) {
			return fmt.Errorf("%w (the user lacks an ACL for this; a super user grants it with sluice acl create)", err)
		}
	}
	return err
}

// topicMetadata fetches metadata for the topics named (all when none).
func topicMetadata(ctx context.Context, cl *kgo.Client, topics ...string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	return req.RequestWith(ctx, cl)
}
