package broker

import (
	"bytes"
	"context"
	"testing"

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
