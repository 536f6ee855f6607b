package broker

import (
	"bytes"
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
)

// clientMessages runs a franz-go client mechanism against a server session
// and returns the client's messages, as fuzz seeds.
func clientMessages(t testing.TB, users *userStore, mech sasl.Mechanism) [][]byte {
	sess, msg, err := mech.Authenticate(context.Background(), "127.0.0.1:9092")
	if err != nil {
		t.Fatal(err)
	}
	srv := newSASLSession(users, mech.Name())
	msgs := [][]byte{msg}
	for {
		out, err := srv.step(msg)
		if err != nil {
			t.Fatalf("%s login of a seed failed: %v", mech.Name(), err)
		}
		done, next, err := sess.Challenge(out)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			return msgs
		}
		msg = next
		msgs = append(msgs, msg)
	}
}

// FuzzSASLSession feeds arbitrary client messages (split on a 0xff byte)
// through the server side of every mechanism. Nothing may panic, and a
// session may only succeed as a user that exists, with a mechanism that
// user may use.
func FuzzSASLSession(f *testing.F) {
	dir := f.TempDir()
	users, err := openUsers(dir, writeFile(f, dir, "users.yaml", testUsers))
	if err != nil {
		f.Fatal(err)
	}
	for _, mech := range Mechanisms {
		msgs := clientMessages(f, users, mechanism(mech, "alice", "alice-secret"))
		f.Add(uint8(0), bytes.Join(msgs, []byte{0xff}))
		f.Add(uint8(1), bytes.Join(msgs, []byte{0xff}))
		f.Add(uint8(2), bytes.Join(msgs, []byte{0xff}))
	}
	f.Add(uint8(1), []byte("n,,n=alice,r=abc\xffc=biws,r=abc,p=AAAA"))
	f.Add(uint8(2), []byte("n,a=bob,n=alice,r=x"))
	f.Add(uint8(0), []byte("\x00alice\x00"))
	f.Fuzz(func(t *testing.T, m uint8, data []byte) {
		mech := Mechanisms[int(m)%len(Mechanisms)]
		s := newSASLSession(users, mech)
		for _, msg := range bytes.Split(data, []byte{0xff}) {
			if _, err := s.step(msg); err != nil {
				return
			}
		}
		if !s.done {
			return
		}
		rec := users.byName[s.user]
		switch {
		case rec == nil:
			t.Fatalf("%s login succeeded as unknown user %q", mech, s.user)
		case mech == MechPlain && !rec.Plain:
			t.Fatalf("PLAIN login succeeded for %q, who may not use PLAIN", s.user)
		case mech != MechPlain && rec.SCRAM[mech].StoredKey == nil:
			t.Fatalf("%s login succeeded for %q, who has no such credential", mech, s.user)
		}
	})
}

// FuzzSASLConn feeds frames (split on a 0xff 0xfe pair) to a fresh
// connection on a SASL listener, as its reader would: requests through
// dispatch, bare tokens after a SaslHandshake v0. Nothing may panic, every
// reply must encode, and no request other than the login ones may run
// before login.
func FuzzSASLConn(f *testing.F) {
	dir := f.TempDir()
	b, err := Open(dir, Options{Logger: testLogger(f), UsersFile: writeFile(f, dir, "users.yaml", testUsers)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	var rf kmsg.RequestFormatter
	sep := []byte{0xff, 0xfe}
	frame := func(r kmsg.Request, v int16) []byte {
		r.SetVersion(v)
		return rf.AppendRequest(nil, r, 1)[4:]
	}
	for _, mech := range Mechanisms {
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Mechanism = mech
		msgs := clientMessages(f, b.users, mechanism(mech, "alice", "alice-secret"))
		v1 := [][]byte{frame(hs, 1)}
		v0 := [][]byte{frame(hs, 0)}
		for _, m := range msgs {
			auth := kmsg.NewPtrSASLAuthenticateRequest()
			auth.SASLAuthBytes = m
			v1 = append(v1, frame(auth, 2))
			v0 = append(v0, m)
		}
		md := frame(kmsg.NewPtrMetadataRequest(), 4)
		f.Add(bytes.Join(append(v1, md), sep))
		f.Add(bytes.Join(append(v0, md), sep))
		f.Add(bytes.Join([][]byte{md}, sep))
	}
	w := newResponseWriter(discardConn{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newConn(b, discardConn{}, SASLPlaintext)
		c.cancel()
		for _, fr := range bytes.Split(data, sep) {
			var q queued
			if c.sasl != nil && c.sasl.legacy && !c.authenticated {
				var ok bool
				if q, ok = c.legacyToken(fr); !ok {
					return
				}
			} else {
				if len(fr) < 8 {
					return // the frame reader refuses these
				}
				before := c.authenticated
				req, rep, err := c.dispatch(fr)
				if err != nil {
					return
				}
				if !before && !preAuthAPI(req.key) {
					t.Fatalf("%s ran before login", kmsg.NameForKey(req.key))
				}
				q = queued{req: req, reply: rep}
			}
			out := q.reply()
			if out != nil {
				_, err := w.write(q.req, out)
				out.release()
				if err != nil {
					t.Fatalf("encode reply: %v", err)
				}
			}
			if c.closeAfterReply != "" {
				return
			}
		}
	})
}
