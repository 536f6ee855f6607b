package file

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// Visible lists the output files under dir a reader should take, relative
// to dir and sorted: every file whose name, and whose every parent
// directory's name below dir, starts with neither "." (staging) nor "_"
// (checkpoints, dead letters), as Hadoop and Spark readers do. A missing
// dir has no output.
func Visible(dir string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			names = append(names, rel)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	slices.Sort(names)
	return names, err
}
