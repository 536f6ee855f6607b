package broker

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/durable"
)

// SASL mechanism names, as clients send them in SaslHandshake.
const (
	MechPlain       = "PLAIN"
	MechSCRAMSHA256 = "SCRAM-SHA-256"
	MechSCRAMSHA512 = "SCRAM-SHA-512"
)

// Mechanisms lists the SASL mechanisms the broker serves.
var Mechanisms = []string{MechPlain, MechSCRAMSHA256, MechSCRAMSHA512}

const (
	// usersFile holds the SASL users' salted credentials in the data
	// directory (never a password), mode 0600.
	usersFile = "users.json"

	// MinSCRAMIterations and MaxSCRAMIterations are Kafka's bounds on a
	// SCRAM credential's PBKDF2 iterations (AlterUserScramCredentials
	// answers UNACCEPTABLE_CREDENTIAL outside them): fewer makes offline
	// guessing of a stolen credential cheap, more makes every login (and
	// every PLAIN login, derived here) cost the broker too much CPU.
	MinSCRAMIterations = 4096
	MaxSCRAMIterations = 16384

	// seedIterations are the iterations of credentials made from a users
	// file: Kafka's default (kafka-configs.sh uses 4096), the cheapest
	// that Kafka accepts.
	seedIterations = MinSCRAMIterations

	// saltBytes is the size of a salt made here (kadm and Kafka's tools
	// make their own); 16 random bytes never repeat in practice.
	saltBytes = 16

	// maxUsersFileBytes bounds the users file read at start; thousands of
	// users fit well within it.
	maxUsersFileBytes = 1 << 20

	// maxUserNameBytes bounds a user name (the principal is "User:" plus
	// it, logged and matched by ACLs).
	maxUserNameBytes = 256
)

// User is one entry of a users file.
type User struct {
	Name     string `yaml:"name"`
	Password string `yaml:"password"`
	// Mechanisms this user may log in with (default: all three). A PLAIN
	// login is checked against the user's SCRAM-SHA-512 credential (or,
	// failing that, SCRAM-SHA-256), so a user listing only PLAIN gets a
	// SCRAM-SHA-512 credential as well, which logs in too.
	Mechanisms []string `yaml:"mechanisms"`
}

// ReadUsersFile reads a users file: a YAML list of users, e.g.
//
//   - name: alice
//     password: s3cret
//     mechanisms: [SCRAM-SHA-512]
func ReadUsersFile(path string) ([]User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read SASL users file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxUsersFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read SASL users file %s: %w", path, err)
	}
	if len(data) > maxUsersFileBytes {
		return nil, fmt.Errorf("SASL users file %s is over %d bytes", path, maxUsersFileBytes)
	}
	var users []User
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&users); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("SASL users file %s: %w (want a list of {name, password, mechanisms})", path, err)
	}
	seen := map[string]bool{}
	for i := range users {
		u := &users[i]
		if err := checkUserName(u.Name); err != nil {
			return nil, fmt.Errorf("SASL users file %s, user %d: %w", path, i+1, err)
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("SASL users file %s: user %q is listed twice", path, u.Name)
		}
		seen[u.Name] = true
		if u.Password == "" {
			return nil, fmt.Errorf("SASL users file %s: user %q has no password", path, u.Name)
		}
		if len(u.Mechanisms) == 0 {
			u.Mechanisms = slices.Clone(Mechanisms)
		}
		for _, m := range u.Mechanisms {
			if !slices.Contains(Mechanisms, m) {
				return nil, fmt.Errorf("SASL users file %s: user %q: unknown mechanism %q, use %s", path, u.Name, m, strings.Join(Mechanisms, ", "))
			}
		}
	}
	return users, nil
}

func checkUserName(name string) error {
	switch {
	case name == "":
		return errors.New("user name must not be empty")
	case len(name) > maxUserNameBytes:
		return fmt.Errorf("user name of %d bytes is over %d", len(name), maxUserNameBytes)
	}
	return nil
}

// scramCredential is what a server keeps to check a SCRAM login
// (RFC 5802): never the password nor the salted password.
type scramCredential struct {
	Salt       []byte `json:"salt"`
	Iterations int    `json:"iterations"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// userRecord is one user as stored.
type userRecord struct {
	Name string `json:"name"`
	// FromFile marks a user the users file made: the file stays in
	// charge of it across restarts.
	FromFile bool `json:"from_file,omitempty"`
	// Plain allows PLAIN logins, checked against SCRAM.
	Plain bool `json:"plain,omitempty"`
	// SCRAM holds the credentials by mechanism name.
	SCRAM map[string]scramCredential `json:"scram,omitempty"`
}

type usersDoc struct {
	Version int           `json:"version"`
	Users   []*userRecord `json:"users"`
}

// userStore holds the SASL users, persisted in usersFile.
type userStore struct {
	path   string
	mu     sync.RWMutex
	byName map[string]*userRecord
	// decoy keys the made-up credentials of unknown users, so a login as
	// one fails at the same step, after the same work, as a wrong password.
	decoy []byte
}

func scramHash(mech string) func() hash.Hash {
	switch mech {
	case MechSCRAMSHA256:
		return sha256.New
	case MechSCRAMSHA512:
		return sha512.New
	}
	return nil
}

// credentialFromSalted derives what is stored from a salted password
// (RFC 5802: ClientKey = HMAC(salted, "Client Key"), StoredKey =
// H(ClientKey), ServerKey = HMAC(salted, "Server Key")).
func credentialFromSalted(mech string, salt, salted []byte, iterations int) scramCredential {
	h := scramHash(mech)
	mac := hmac.New(h, salted)
	mac.Write([]byte("Client Key"))
	hs := h()
	hs.Write(mac.Sum(nil))
	stored := hs.Sum(nil)
	mac = hmac.New(h, salted)
	mac.Write([]byte("Server Key"))
	return scramCredential{Salt: bytes.Clone(salt), Iterations: iterations, StoredKey: stored, ServerKey: mac.Sum(nil)}
}

func saltPassword(mech, password string, salt []byte, iterations int) ([]byte, error) {
	h := scramHash(mech)
	return pbkdf2.Key(h, password, salt, iterations, h().Size())
}

func newCredential(mech, password string) (scramCredential, error) {
	salt := make([]byte, saltBytes)
	rand.Read(salt)
	salted, err := saltPassword(mech, password, salt, seedIterations)
	if err != nil {
		return scramCredential{}, err
	}
	return credentialFromSalted(mech, salt, salted, seedIterations), nil
}

// matches reports, in constant time, whether password derives cred.
func (cred scramCredential) matches(mech, password string) bool {
	salted, err := saltPassword(mech, password, cred.Salt, cred.Iterations)
	if err != nil {
		return false
	}
	got := credentialFromSalted(mech, cred.Salt, salted, cred.Iterations)
	return hmac.Equal(got.StoredKey, cred.StoredKey)
}

// openUsers loads the stored users and applies the users file, if any.
func openUsers(dir, file string) (*userStore, error) {
	s := &userStore{path: filepath.Join(dir, usersFile), byName: map[string]*userRecord{}, decoy: make([]byte, 32)}
	rand.Read(s.decoy)
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read SASL users: %w", err)
	default:
		var doc usersDoc
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("SASL users file %s is damaged: %w (restore it from a backup, or delete it and give --sasl-users again)", s.path, err)
		}
		for _, u := range doc.Users {
			s.byName[u.Name] = u
		}
	}
	if file == "" {
		return s, nil
	}
	seed, err := ReadUsersFile(file)
	if err != nil {
		return nil, err
	}
	changed, err := s.applySeed(seed)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// applySeed makes the users the file names match it (keeping a stored
// credential its password still derives, so salts do not change at every
// start) and removes the users an earlier file made that it no longer
// names. Users made through AlterUserScramCredentials and not in the file
// stay.
func (s *userStore) applySeed(seed []User) (changed bool, err error) {
	named := map[string]bool{}
	for _, u := range seed {
		named[u.Name] = true
		want := map[string]bool{}
		plain := false
		for _, m := range u.Mechanisms {
			if m == MechPlain {
				plain = true
			} else {
				want[m] = true
			}
		}
		if len(want) == 0 {
			want[MechSCRAMSHA512] = true // what PLAIN is checked against
		}
		old := s.byName[u.Name]
		rec := &userRecord{Name: u.Name, FromFile: true, Plain: plain, SCRAM: map[string]scramCredential{}}
		for m := range want {
			if old != nil {
				if cred, ok := old.SCRAM[m]; ok && cred.matches(m, u.Password) {
					rec.SCRAM[m] = cred
					continue
				}
			}
			cred, err := newCredential(m, u.Password)
			if err != nil {
				return false, fmt.Errorf("user %q: %w", u.Name, err)
			}
			rec.SCRAM[m] = cred
			changed = true
		}
		if old == nil || !old.FromFile || old.Plain != rec.Plain || len(old.SCRAM) != len(rec.SCRAM) {
			changed = true
		}
		s.byName[u.Name] = rec
	}
	for name, rec := range s.byName {
		if rec.FromFile && !named[name] {
			delete(s.byName, name)
			changed = true
		}
	}
	return changed, nil
}

// save writes every user durably (temporary file, fsync, rename, fsync of
// the directory). Called with mu held for writing, or before the store is
// shared.
func (s *userStore) save() error {
	doc := usersDoc{Version: 1}
	for _, rec := range s.byName {
		doc.Users = append(doc.Users, rec)
	}
	sort.Slice(doc.Users, func(i, j int) bool { return doc.Users[i].Name < doc.Users[j].Name })
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(s.path, data); err != nil {
		return fmt.Errorf("save SASL users: %w", err)
	}
	return nil
}

func (s *userStore) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byName)
}

// scram returns name's credential for mech and whether it exists; for an
// unknown user (or mechanism the user lacks) it returns a made-up
// credential that no password matches, with the usual iterations.
func (s *userStore) scram(mech, name string) (scramCredential, bool) {
	s.mu.RLock()
	rec := s.byName[name]
	var cred scramCredential
	ok := false
	if rec != nil {
		cred, ok = rec.SCRAM[mech]
	}
	s.mu.RUnlock()
	if ok {
		return cred, true
	}
	h := scramHash(mech)
	derive := func(label string) []byte {
		mac := hmac.New(h, s.decoy)
		mac.Write([]byte(label + "\x00" + mech + "\x00" + name))
		return mac.Sum(nil)
	}
	return scramCredential{Salt: derive("salt")[:saltBytes], Iterations: seedIterations,
		StoredKey: derive("stored"), ServerKey: derive("server")}, false
}

// checkPlain reports whether password is name's, for a PLAIN login. It
// derives from the stored SCRAM credential (the same work for an unknown
// user, against a made-up one).
func (s *userStore) checkPlain(name, password string) bool {
	s.mu.RLock()
	rec := s.byName[name]
	allowed := rec != nil && rec.Plain
	s.mu.RUnlock()
	mech := MechSCRAMSHA512
	cred, ok := s.scram(mech, name)
	if !ok {
		if c, ok256 := s.scram(MechSCRAMSHA256, name); ok256 {
			mech, cred, ok = MechSCRAMSHA256, c, true
		}
	}
	match := cred.matches(mech, password)
	return allowed && ok && match
}

// plainRefusal says, for the log only, why a PLAIN login as name failed.
func (s *userStore) plainRefusal(name string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch rec := s.byName[name]; {
	case rec == nil:
		return "unknown user"
	case !rec.Plain:
		return "PLAIN is not among the user's mechanisms"
	case len(rec.SCRAM) == 0:
		return "the user has no credential left to check PLAIN against"
	}
	return "wrong password"
}
