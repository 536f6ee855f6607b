// Package durable holds the two file-system steps every crash-safe store
// in Sluice is built from: fsyncing a directory so a rename or creation in
// it survives a crash, and replacing a file so a crash leaves either the
// old or the new content.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir fsyncs dir, making renames, creations and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// WriteFile replaces path with data so that a crash leaves either the old
// or the new content: a temporary file in the same directory, fsynced,
// renamed over path, then the directory fsynced. It creates the directory
// if needed.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}
