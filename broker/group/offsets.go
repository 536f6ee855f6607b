package group

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/broker/internal/entrylog"
)

const (
	// MaxOffsetMetadata bounds the metadata string kept with a committed
	// offset (Kafka's offset.metadata.max.bytes default is 4096).
	MaxOffsetMetadata = 4096
	// compactMinEntries and the live-size ratio decide when the log is
	// rewritten with only the latest offset per partition.
	compactMinEntries = 10000
)

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
}

// Offset is one committed offset.
type Offset struct {
	TopicPartition
	Offset      int64     `json:"o"` // -1 in a Fetch result: nothing committed
	LeaderEpoch int32     `json:"e"`
	Metadata    string    `json:"m,omitempty"`
	Time        time.Time `json:"ts"`
}

// entry is one log record: a commit of several partitions, a group
// deletion, or the deletion of some partitions' offsets (OffsetDelete).
type entry struct {
	Group   string           `json:"g"`
	Delete  bool             `json:"d,omitempty"`
	Offsets []Offset         `json:"os,omitempty"`
	Forget  []TopicPartition `json:"f,omitempty"`
}

// OffsetStore keeps committed offsets in memory and in an append-only log
// (entrylog: length, CRC-32C, JSON) that is fsynced before a commit is
// acknowledged.
type OffsetStore struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	w       *bufio.Writer
	entries int // log entries since the last compaction
	groups  map[string]map[TopicPartition]Offset
}

// OpenOffsetStore opens (or creates) the store in dir, replaying its log and
// cutting off a torn tail left by a crash.
func OpenOffsetStore(dir string) (*OffsetStore, error) {
	s := &OffsetStore{path: filepath.Join(dir, "offsets.log"), groups: map[string]map[TopicPartition]Offset{}}
	f, n, err := entrylog.Open(s.path, func(body []byte) error {
		var e entry
		if err := json.Unmarshal(body, &e); err != nil {
			return fmt.Errorf("%w; the file is damaged beyond a torn tail", err)
		}
		s.apply(e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.f, s.w, s.entries = f, bufio.NewWriter(f), n
	return s, nil
}

func (s *OffsetStore) apply(e entry) {
	if e.Delete {
		delete(s.groups, e.Group)
		return
	}
	g := s.groups[e.Group]
	if g == nil {
		g = map[TopicPartition]Offset{}
		s.groups[e.Group] = g
	}
	for _, o := range e.Offsets {
		g[o.TopicPartition] = o
	}
	for _, tp := range e.Forget {
		delete(g, tp)
	}
}

// append writes e durably, then applies it.
func (s *OffsetStore) append(e entry) error {
	b, err := entrylog.Append(nil, e)
	if err != nil {
		return err
	}
	s.w.Write(b)
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.apply(e)
	s.entries++
	if s.entries >= compactMinEntries && s.entries > 2*s.live() {
		return s.compact()
	}
	return nil
}

func (s *OffsetStore) live() int {
	n := 0
	for _, g := range s.groups {
		if len(g) > 0 {
			n++
		}
	}
	return n
}

// compact rewrites the log with one entry per group, atomically.
func (s *OffsetStore) compact() error {
	f, err := entrylog.Rewrite(s.path, func(add func(any) error) error {
		for _, name := range s.groupNames() {
			e := entry{Group: name}
			for _, o := range s.groups[name] {
				e.Offsets = append(e.Offsets, o)
			}
			if err := add(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.f.Close()
	s.f, s.w = f, bufio.NewWriter(f)
	s.entries = s.live()
	return nil
}

func (s *OffsetStore) groupNames() []string {
	names := make([]string, 0, len(s.groups))
	for g := range s.groups {
		names = append(names, g)
	}
	sort.Strings(names)
	return names
}

// Commit durably stores offsets for group.
func (s *OffsetStore) Commit(group string, offsets []Offset) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	stamped := make([]Offset, len(offsets))
	for i, o := range offsets {
		if o.Time.IsZero() {
			o.Time = now
		}
		stamped[i] = o
	}
	return s.append(entry{Group: group, Offsets: stamped})
}

// DeleteGroup durably forgets group's offsets.
func (s *OffsetStore) DeleteGroup(group string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.groups[group]; !ok {
		return nil
	}
	return s.append(entry{Group: group, Delete: true})
}

// DeleteOffsets durably forgets group's offsets of parts and returns how
// many partitions still have one.
func (s *OffsetStore) DeleteOffsets(group string, parts []TopicPartition) (left int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	var forget []TopicPartition
	for _, tp := range parts {
		if _, ok := g[tp]; ok {
			forget = append(forget, tp)
		}
	}
	if len(forget) > 0 {
		if err := s.append(entry{Group: group, Forget: forget}); err != nil {
			return len(g), err
		}
	}
	return len(s.groups[group]), nil
}

// Fetch returns group's committed offsets for parts (Offset -1 where none),
// or all of them, sorted, when parts is nil.
func (s *OffsetStore) Fetch(group string, parts []TopicPartition) []Offset {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if parts == nil {
		out := make([]Offset, 0, len(g))
		for _, o := range g {
			out = append(out, o)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Topic != out[j].Topic {
				return out[i].Topic < out[j].Topic
			}
			return out[i].Partition < out[j].Partition
		})
		return out
	}
	out := make([]Offset, len(parts))
	for i, tp := range parts {
		o, ok := g[tp]
		if !ok {
			o = Offset{TopicPartition: tp, Offset: -1, LeaderEpoch: -1}
		}
		out[i] = o
	}
	return out
}

// Groups lists the groups with committed offsets.
func (s *OffsetStore) Groups() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groupNames()
}

// Close flushes and closes the log.
func (s *OffsetStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.w.Flush(), s.f.Close())
}
