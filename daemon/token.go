package daemon

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluicehq/sluice/internal/durable"
)

const (
	// TokenFileName is the token file's name in the data directory when
	// --http-token-file is not given.
	TokenFileName = "http-token"
	// tokenBytes is the entropy of a generated token (written as hex).
	tokenBytes = 32
	// minTokenLen refuses a token file an operator filled with a short,
	// guessable token: a generated one has 64 characters.
	minTokenLen = 32
)

// token is the bearer token mutating API requests carry. Only its hash is
// kept, so comparing takes the same time whatever the length of the token
// sent.
type token struct {
	path string
	sum  [sha256.Size]byte
	mode fs.FileMode
}

// loadToken reads the token file at path, or generates one if there is
// none: 32 random bytes in hex, mode 0600, fsynced and linked into place
// so a concurrent start never replaces a token another process read.
// generated says which happened.
func loadToken(path string) (tok *token, generated bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createToken(path); err != nil {
			return nil, false, fmt.Errorf("--http-token-file %s: generating the HTTP API token: %w", path, err)
		}
		generated = true
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("--http-token-file %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("--http-token-file %s: %w", path, err)
	}
	secret := strings.TrimSpace(string(data))
	if len(secret) < minTokenLen {
		return nil, false, fmt.Errorf("--http-token-file %s holds %d characters, fewer than %d: delete it and the daemon generates a token, or write a longer one", path, len(secret), minTokenLen)
	}
	return &token{path: path, sum: sha256.Sum256([]byte(secret)), mode: st.Mode().Perm()}, generated, nil
}

func createToken(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b := make([]byte, tokenBytes)
	rand.Read(b) // crypto/rand never fails
	// CreateTemp makes the file with mode 0600 whatever the umask.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(b) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// A link, not a rename: if another process created the file meanwhile,
	// its token stays and this one is dropped.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return durable.SyncDir(dir)
}

// matches reports whether sent is the token, in constant time.
func (t *token) matches(sent string) bool {
	sum := sha256.Sum256([]byte(sent))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// openToOthers reports whether users other than the owner and group can
// read the token file, or write one of their own into it (taken at the
// next start).
func (t *token) openToOthers() bool { return t.mode&0o006 != 0 }
