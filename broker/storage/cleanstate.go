package storage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/durable"
	"github.com/sluicehq/sluice/internal/testhook"
)

// The cleaner's files in a partition directory (ARCHITECTURE §9,
// "Compaction"). None ends in .log, so listSegments ignores them.
const (
	// cleanerCheckpointFile holds the first dirty offset (everything below
	// it was cleaned at least once) and when each stretch of the log was
	// first cleaned, which starts the clock of its tombstones.
	cleanerCheckpointFile = "cleaner-checkpoint"
	// cleanerSwapFile is the commit point of a clean: it names the
	// segments being replaced and those replacing them. While it exists
	// the swap is finished (again) at open.
	cleanerSwapFile = "cleaner-swap"
	// cleanedSuffix ends a file the cleaner is writing: "<base>.log.cleaned"
	// and the same for each index. Without a swap file they are an
	// unfinished clean, deleted at open.
	cleanedSuffix = ".cleaned"

	checkpointHeader = "sluice cleaner checkpoint v1"
	swapHeader       = "sluice cleaner swap v1"

	// maxCleanSpans bounds the spans a checkpoint keeps. A clean adds one;
	// expired ones merge. Past it the two closest in time merge, keeping
	// the later time, so a tombstone is at worst kept a little longer.
	// 1024 spans are a 30 KiB file; a log cleaned every 15 s (the
	// cleaner's idle backoff) within one default delete.retention.ms (a
	// day) adds 5760, so merging keeps about 20 minutes' resolution.
	maxCleanSpans = 1024
)

// segmentSuffixes are the files of a segment a clean replaces.
var segmentSuffixes = []string{logSuffix, indexSuffix, timeIndexSuffix, txnIndexSuffix}

// cleanSpan says the offsets from from up to the next span were first
// cleaned at atMs (Unix ms).
type cleanSpan struct {
	from, atMs int64
}

// cleanerState is what the checkpoint holds.
type cleanerState struct {
	// firstDirty: offsets below it were cleaned at least once, and
	// segments starting below it may skip offsets (segment.gaps).
	firstDirty int64
	spans      []cleanSpan // by from, below firstDirty
	// unknown says the checkpoint could not be read: every segment may
	// have gaps, and everything is taken for dirty.
	unknown bool
}

// covers says a segment starting at base may hold cleaned batches.
func (c *cleanerState) covers(base int64) bool { return c.unknown || base < c.firstDirty }

// cleanedAt is when offset was first cleaned (Unix ms), or -1 if never.
func (c *cleanerState) cleanedAt(off int64) int64 {
	if off >= c.firstDirty {
		return -1
	}
	i, found := slices.BinarySearchFunc(c.spans, off, func(s cleanSpan, o int64) int {
		switch {
		case s.from < o:
			return -1
		case s.from > o:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i < 0 {
		return -1
	}
	return c.spans[i].atMs
}

// advanced is the state after a clean of [c.firstDirty, to) at nowMs,
// pruned of spans wholly below start and of expired spans merged.
func (c cleanerState) advanced(start, to, nowMs int64, retention time.Duration) cleanerState {
	spans := slices.Clone(c.spans)
	if to > c.firstDirty {
		spans = append(spans, cleanSpan{from: c.firstDirty, atMs: nowMs})
	}
	for len(spans) > 1 && spans[1].from <= start {
		spans = spans[1:]
	}
	expired := nowMs - retention.Milliseconds()
	out := spans[:0:0]
	for _, s := range spans {
		if n := len(out); n > 0 && out[n-1].atMs < expired && s.atMs < expired {
			out[n-1].atMs = max(out[n-1].atMs, s.atMs)
			continue
		}
		out = append(out, s)
	}
	for len(out) > maxCleanSpans {
		k := 1
		for i := 2; i < len(out); i++ {
			if out[i].atMs-out[i-1].atMs < out[k].atMs-out[k-1].atMs {
				k = i
			}
		}
		out[k-1].atMs = max(out[k-1].atMs, out[k].atMs)
		out = slices.Delete(out, k, k+1)
	}
	return cleanerState{firstDirty: max(to, c.firstDirty), spans: out}
}

func (c cleanerState) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nfirst-dirty %d\n", checkpointHeader, c.firstDirty)
	for _, s := range c.spans {
		fmt.Fprintf(&b, "span %d %d\n", s.from, s.atMs)
	}
	return b.Bytes()
}

func decodeCleanerState(data []byte) (cleanerState, error) {
	var c cleanerState
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() || sc.Text() != checkpointHeader {
		return c, errors.New("no checkpoint header")
	}
	if !sc.Scan() {
		return c, errors.New("no first-dirty line")
	}
	if _, err := fmt.Sscanf(sc.Text(), "first-dirty %d", &c.firstDirty); err != nil || c.firstDirty < 0 {
		return c, fmt.Errorf("bad first-dirty line %q", sc.Text())
	}
	for sc.Scan() {
		var s cleanSpan
		if _, err := fmt.Sscanf(sc.Text(), "span %d %d", &s.from, &s.atMs); err != nil || s.from < 0 || s.from >= c.firstDirty ||
			(len(c.spans) > 0 && s.from <= c.spans[len(c.spans)-1].from) {
			return c, fmt.Errorf("bad span line %q", sc.Text())
		}
		c.spans = append(c.spans, s)
	}
	return c, sc.Err()
}

// loadCleanerState reads the checkpoint at open, before the segments, whose
// gap tolerance it decides. A damaged one is not fatal: every segment is
// then read as possibly cleaned and the whole log cleaned again.
func loadCleanerState(dir string, cfg Config) cleanerState {
	path := filepath.Join(dir, cleanerCheckpointFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cleanerState{}
	}
	c, derr := decodeCleanerState(data)
	if err == nil && derr == nil {
		return c
	}
	cfg.Logger.Warn("cleaner checkpoint unreadable; the whole log is cleaned again and tombstones are kept another delete.retention.ms",
		"file", path, "err", errors.Join(err, derr))
	return cleanerState{unknown: true}
}

func writeCleanerState(dir string, c cleanerState) error {
	return durable.WriteFile(filepath.Join(dir, cleanerCheckpointFile), c.encode())
}

// swapManifest is what cleanerSwapFile holds: the bases of the segments
// replaced, and those of the cleaned segments replacing them (each the base
// of the first segment of its group, so a subset of the old ones).
type swapManifest struct {
	old, new []int64
	// state is the cleaner checkpoint that goes with the new segments: it
	// is written by the swap, so it never describes segments not in place
	// (a tombstone's clock must not start before the older values of its
	// key are gone from the log).
	state cleanerState
}

func (m swapManifest) encode() []byte {
	line := func(name string, bases []int64) string {
		parts := make([]string, len(bases)) // may be empty: a line of its name alone
		for i, b := range bases {
			parts[i] = strconv.FormatInt(b, 10)
		}
		return name + " " + strings.Join(parts, " ") + "\n"
	}
	return append([]byte(swapHeader+"\n"+line("replace", m.old)+line("new", m.new)), m.state.encode()...)
}

func decodeSwapManifest(data []byte) (swapManifest, error) {
	var m swapManifest
	lines := strings.SplitN(string(data), "\n", 4)
	if len(lines) != 4 || lines[0] != swapHeader {
		return m, errors.New("not a swap manifest")
	}
	parse := func(line, name string) ([]int64, error) {
		f := strings.Fields(line)
		if len(f) < 1 || f[0] != name {
			return nil, fmt.Errorf("bad %s line", name)
		}
		var out []int64
		for _, s := range f[1:] {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 || (len(out) > 0 && n <= out[len(out)-1]) {
				return nil, fmt.Errorf("bad %s line", name)
			}
			out = append(out, n)
		}
		return out, nil
	}
	var err error
	if m.old, err = parse(lines[1], "replace"); err != nil {
		return m, err
	}
	if m.new, err = parse(lines[2], "new"); err != nil {
		return m, err
	}
	for _, b := range m.new {
		if !slices.Contains(m.old, b) {
			return m, fmt.Errorf("new segment %d replaces none", b)
		}
	}
	if m.state, err = decodeCleanerState([]byte(lines[3])); err != nil {
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	return m, nil
}

// applySwap carries out a committed swap: deletes the files of the old
// segments that no new one replaces, renames every cleaned file over its
// final name (rename replaces the old file at the same base atomically),
// syncs the directory and removes the manifest. Every step may already be
// done, so the open after a crash runs it again from the start. step, if
// set, is told of each file operation (the crash tests stop there).
func applySwap(dir string, m swapManifest, step func(string) error) error {
	if err := writeCleanerState(dir, m.state); err != nil {
		return fmt.Errorf("write cleaner checkpoint: %w", err)
	}
	if err := hookStep(step, "checkpoint"); err != nil {
		return err
	}
	for _, b := range m.old {
		if slices.Contains(m.new, b) {
			continue
		}
		for _, suffix := range segmentSuffixes {
			path := segmentName(dir, b, suffix)
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := hookStep(step, "remove "+filepath.Base(path)); err != nil {
				return err
			}
		}
	}
	for _, b := range m.new {
		for _, suffix := range segmentSuffixes {
			path := segmentName(dir, b, suffix)
			err := os.Rename(path+cleanedSuffix, path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := hookStep(step, "rename "+filepath.Base(path)); err != nil {
				return err
			}
		}
	}
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, cleanerSwapFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := hookStep(step, "remove "+cleanerSwapFile); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

func hookStep(step func(string) error, name string) error {
	if testhook.CleanerStep != nil {
		testhook.CleanerStep(name)
	}
	if step == nil {
		return nil
	}
	return step(name)
}

// recoverClean finishes or undoes a clean a crash interrupted, before the
// segments are listed: with a swap manifest the swap is carried out; without
// one, cleaned files are the output of a clean that never committed and are
// deleted, leaving the old segments as they were.
func recoverClean(dir string, cfg Config) error {
	data, err := os.ReadFile(filepath.Join(dir, cleanerSwapFile))
	switch {
	case err == nil:
		m, derr := decodeSwapManifest(data)
		if derr != nil {
			// Written by rename, so whole or absent: this is not ours.
			return fmt.Errorf("cleaner swap file %s is damaged (%v): restore the partition directory from a backup", filepath.Join(dir, cleanerSwapFile), derr)
		}
		cfg.Logger.Info("finishing a log clean interrupted by a stop", "dir", dir, "segments_replaced", len(m.old), "segments_new", len(m.new))
		return applySwap(dir, m, nil)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read cleaner swap file: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), cleanedSuffix) || strings.HasSuffix(e.Name(), cleanedSuffix+".tmp") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
			removed = true
		}
	}
	if removed {
		cfg.Logger.Info("dropped the output of a log clean interrupted by a stop; the old segments stay", "dir", dir)
		return durable.SyncDir(dir)
	}
	return nil
}
