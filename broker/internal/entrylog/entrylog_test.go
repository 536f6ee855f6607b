package entrylog

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func readAll(t *testing.T, path string) []string {
	t.Helper()
	var got []string
	f, _, err := Open(path, func(body []byte) error {
		var s string
		if err := json.Unmarshal(body, &s); err != nil {
			return err
		}
		got = append(got, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return got
}

// A torn or corrupt tail is cut off at the last intact entry, and appending
// after it gives a log that reads back whole; Rewrite replaces everything.
func TestTornTailAndRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	var b []byte
	for _, s := range []string{"a", "b", "c"} {
		b, _ = Append(b, s)
	}
	whole := len(b)
	b, _ = Append(b, "torn")
	for _, tail := range [][]byte{b[:len(b)-2], append(b[:whole:whole], 0, 0, 0, 9, 1, 2, 3, 4, '"', 'x')} {
		os.WriteFile(path, tail, 0o644)
		if got := readAll(t, path); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("read %q", got)
		}
		if fi, _ := os.Stat(path); fi.Size() != int64(whole) {
			t.Fatalf("file is %d bytes after open; want the torn tail cut to %d", fi.Size(), whole)
		}
	}
	f, _, _ := Open(path, func([]byte) error { return nil })
	d, _ := Append(nil, "d")
	f.Write(d)
	f.Close()
	if got := readAll(t, path); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("after append: %q", got)
	}
	f, err := Rewrite(path, func(add func(any) error) error { return add("z") })
	if err != nil {
		t.Fatal(err)
	}
	e, _ := Append(nil, "after")
	f.Write(e)
	f.Close()
	if got := readAll(t, path); !slices.Equal(got, []string{"z", "after"}) {
		t.Fatalf("after rewrite: %q", got)
	}
}

// An entry whose CRC holds but whose body makes no sense is an error, not
// a tail to cut: that is damage a crash cannot cause.
func TestDamageIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	b, _ := Append(nil, 42)
	os.WriteFile(path, b, 0o644)
	if _, _, err := Open(path, func(body []byte) error { var s string; return json.Unmarshal(body, &s) }); err == nil {
		t.Fatal("Open accepted an entry its callback refused")
	}
}

// FuzzReplay: no panic, and the intact prefix Replay reports is exactly
// the bodies it handed out, framed again.
func FuzzReplay(f *testing.F) {
	b, _ := Append(nil, "a")
	b, _ = Append(b, map[string]int{"x": 1})
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var again []byte
		good, n, err := Replay(bytes.NewReader(data), int64(len(data)), func(body []byte) error {
			again = frame(again, body)
			return nil
		})
		if err != nil || good > int64(len(data)) {
			t.Fatalf("Replay = %d, %d, %v", good, n, err)
		}
		if !bytes.Equal(again, data[:good]) {
			t.Fatalf("intact prefix of %d bytes (%d entries) is not its entries framed again", good, n)
		}
	})
}
