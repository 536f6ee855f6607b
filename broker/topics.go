package broker

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/broker/group"
	"github.com/sluicehq/sluice/broker/storage"
	"github.com/sluicehq/sluice/internal/durable"
)

// apiError is an error with the Kafka error code the client gets.
type apiError struct {
	code *kerr.Error
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func errorf(code *kerr.Error, format string, args ...any) error {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// codeOf maps an error to the Kafka error code and message for the client.
func codeOf(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	msg := err.Error()
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.code.Code, &msg
	case errors.Is(err, storage.ErrCorrupt):
		return kerr.CorruptMessage.Code, &msg
	case errors.Is(err, storage.ErrTooLarge):
		return kerr.MessageTooLarge.Code, &msg
	case errors.Is(err, storage.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code, &msg
	case errors.Is(err, storage.ErrOffline):
		return kerr.KafkaStorageError.Code, &msg
	case errors.Is(err, storage.ErrClosed):
		return kerr.UnknownTopicOrPartition.Code, &msg
	case errors.Is(err, storage.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code, &msg
	case errors.Is(err, storage.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code, &msg
	case errors.Is(err, storage.ErrInvalidRecord):
		return kerr.InvalidRecord.Code, &msg
	default:
		return kerr.KafkaStorageError.Code, &msg
	}
}

// topicConfigDef declares one supported topic config: its default, how it
// is checked and how it reaches the partition log.
type topicConfigDef struct {
	name  string
	def   func(o Options) string
	check func(v string) error
	apply func(c *storage.Config, v string)
	typ   int8 // kmsg.ConfigType: 5 LONG, 2 STRING
	// broker is Kafka's name of the broker config that is the default of
	// this one (log.retention.ms for retention.ms), dynamic (configs.go).
	broker string
}

func parseLong(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be an integer from %d to %d", lo, hi)
		}
		return nil
	}
}

func atoi(v string) int64 { n, _ := strconv.ParseInt(v, 10, 64); return n }

func msOf(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// msDuration is a config in milliseconds as a Duration, capped where
// Duration ends (292 years: Long.MAX milliseconds means "never").
func msDuration(v string) time.Duration {
	n := atoi(v)
	if n > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(n) * time.Millisecond
}

// checkCleanupPolicy takes Kafka's values: a list of delete and compact.
func checkCleanupPolicy(v string) error {
	items := strings.Split(v, ",")
	for i, x := range items {
		if x != "delete" && x != "compact" {
			return fmt.Errorf("%q is not a cleanup policy; use delete, compact or compact,delete", x)
		}
		if slices.Contains(items[:i], x) {
			return fmt.Errorf("%q is named twice", x)
		}
	}
	return nil
}

var topicConfigDefs = []topicConfigDef{
	{name: "cleanup.policy", broker: "log.cleanup.policy", typ: 7,
		def:   func(Options) string { return "delete" },
		check: checkCleanupPolicy,
		apply: func(c *storage.Config, v string) {
			items := strings.Split(v, ",")
			c.Compact = slices.Contains(items, "compact")
			c.KeepForever = !slices.Contains(items, "delete")
		}},
	{name: "delete.retention.ms", broker: "log.cleaner.delete.retention.ms", typ: 5,
		def:   func(Options) string { return msOf(storage.DefaultDeleteRetention) },
		check: parseLong(0, math.MaxInt64),
		// 0 is Kafka's "at once"; the storage takes 0 for its default.
		apply: func(c *storage.Config, v string) { c.DeleteRetention = max(msDuration(v), time.Nanosecond) }},
	{name: "max.compaction.lag.ms", broker: "log.cleaner.max.compaction.lag.ms", typ: 5,
		def:   func(Options) string { return strconv.FormatInt(math.MaxInt64, 10) },
		check: parseLong(1, math.MaxInt64),
		apply: func(c *storage.Config, v string) { c.MaxCompactionLag = msDuration(v) }},
	{name: "max.message.bytes", broker: "message.max.bytes", typ: 5,
		def:   func(Options) string { return strconv.Itoa(DefaultMaxMessageBytes) },
		check: parseLong(0, MaxFrameBytes),
		apply: func(c *storage.Config, v string) { c.MaxBatchBytes = atoi(v) }},
	{name: "min.cleanable.dirty.ratio", broker: "log.cleaner.min.cleanable.ratio", typ: 6,
		def: func(Options) string { return strconv.FormatFloat(storage.DefaultMinCleanableRatio, 'f', -1, 64) },
		check: func(v string) error {
			if f, err := strconv.ParseFloat(v, 64); err != nil || !(f >= 0 && f <= 1) {
				return fmt.Errorf("must be a number from 0 to 1")
			}
			return nil
		},
		apply: func(c *storage.Config, v string) {
			f, _ := strconv.ParseFloat(v, 64)
			// 0 means any dirty byte; the storage takes 0 for its default.
			c.MinCleanableRatio = max(f, math.SmallestNonzeroFloat64)
		}},
	{name: "min.compaction.lag.ms", broker: "log.cleaner.min.compaction.lag.ms", typ: 5,
		def:   func(Options) string { return "0" },
		check: parseLong(0, math.MaxInt64),
		apply: func(c *storage.Config, v string) { c.MinCompactionLag = msDuration(v) }},
	{name: "retention.bytes", broker: "log.retention.bytes", typ: 5,
		def: func(o Options) string {
			if o.RetentionBytes > 0 {
				return strconv.FormatInt(o.RetentionBytes, 10)
			}
			return "-1"
		},
		check: parseLong(-1, 1<<62),
		apply: func(c *storage.Config, v string) { c.RetentionBytes = atoi(v) }},
	{name: "retention.ms", broker: "log.retention.ms", typ: 5,
		def: func(o Options) string {
			switch {
			case o.RetentionAge < 0:
				return "-1"
			case o.RetentionAge == 0:
				return msOf(168 * time.Hour)
			}
			return msOf(o.RetentionAge)
		},
		check: parseLong(-1, 1<<62),
		apply: func(c *storage.Config, v string) {
			if n := atoi(v); n < 0 {
				c.RetentionAge = -1
			} else {
				c.RetentionAge = max(time.Duration(n)*time.Millisecond, time.Millisecond)
			}
		}},
	{name: "segment.bytes", broker: "log.segment.bytes", typ: 5,
		def: func(o Options) string {
			if o.SegmentBytes > 0 {
				return strconv.FormatInt(o.SegmentBytes, 10)
			}
			return strconv.Itoa(storage.DefaultSegmentBytes)
		},
		check: parseLong(1024, storage.MaxSegmentBytes),
		apply: func(c *storage.Config, v string) { c.SegmentBytes = atoi(v) }},
	{name: "segment.ms", broker: "log.roll.ms", typ: 5,
		def: func(o Options) string {
			if o.SegmentAge > 0 {
				return msOf(o.SegmentAge)
			}
			return msOf(7 * 24 * time.Hour)
		},
		check: parseLong(1, 1<<62),
		apply: func(c *storage.Config, v string) { c.SegmentAge = time.Duration(atoi(v)) * time.Millisecond }},
}

func configDef(name string) *topicConfigDef {
	for i := range topicConfigDefs {
		if topicConfigDefs[i].name == name {
			return &topicConfigDefs[i]
		}
	}
	return nil
}

// topicMeta is what topic.json holds.
type topicMeta struct {
	Name       string            `json:"name"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
	// ID is the topic id (KIP-516) in hex, made at creation. Topics made
	// before ids existed have none stored and get one derived from their
	// name (topic.id), stable across restarts.
	ID string `json:"id,omitempty"`
}

type topic struct {
	meta  topicMeta
	dir   string
	parts []*storage.Partition
}

// id is the topic's id: the stored one, else one derived from the name.
// Metadata v10+ reports it and KIP-848 assignments name topics by it.
func (t *topic) id() [16]byte {
	var id [16]byte
	if b, err := hex.DecodeString(t.meta.ID); err == nil && len(b) == len(id) {
		copy(id[:], b)
		return id
	}
	return derivedTopicID(t.meta.Name)
}

// derivedTopicID is the id of a topic stored without one: a hash of its
// name, so it does not change across restarts (a topic deleted and made
// again under the same name gets a fresh random id, stored).
func derivedTopicID(name string) [16]byte {
	sum := sha256.Sum256([]byte("sluice topic id\x00" + name))
	var id [16]byte
	copy(id[:], sum[:])
	return id
}

// newTopicID returns a random topic id, never the all-zero id Kafka
// reserves for "none".
func newTopicID() string {
	var id [16]byte
	for id == ([16]byte{}) {
		rand.Read(id[:])
	}
	return hex.EncodeToString(id[:])
}

// value returns the effective value of a config and whether it was set on
// the topic.
func (t *topic) value(def *topicConfigDef, o Options) (string, bool) {
	topicConfigsMu.RLock()
	v, ok := t.meta.Configs[def.name]
	topicConfigsMu.RUnlock()
	if ok {
		return v, true
	}
	if v, _, ok := o.dynamic.get(def.broker); ok {
		return v, false
	}
	return def.def(o), false
}

func (t *topic) storageConfig(o Options, log *slog.Logger) storage.Config {
	c := storage.Config{Logger: log}
	for i := range topicConfigDefs {
		v, _ := t.value(&topicConfigDefs[i], o)
		topicConfigDefs[i].apply(&c, v)
	}
	return c
}

// topicSet is the broker's topics under <data>/topics, one directory each.
type topicSet struct {
	dir   string
	trash string
	opts  Options
	log   *slog.Logger
	lock  *os.File

	// openConns tells how many client connections are open, for the
	// descriptors checkCapacity keeps for more; nil in tests of the set.
	openConns func() int
	// cleanerWake, if set, tells the log cleaner configs changed.
	cleanerWake func()

	opMu sync.Mutex // serialises create and delete, which move directories
	mu   sync.RWMutex
	m    map[string]*topic
}

func openTopics(dataDir string, opts Options, clean bool, lock *os.File) (*topicSet, error) {
	ts := &topicSet{dir: filepath.Join(dataDir, "topics"), trash: filepath.Join(dataDir, "trash"),
		opts: opts, log: opts.Logger, lock: lock, m: map[string]*topic{}}
	// A delete that crashed half-way left its directory in the trash.
	if err := os.RemoveAll(ts.trash); err != nil {
		return nil, fmt.Errorf("empty %s: %w", ts.trash, err)
	}
	for _, d := range []string{ts.dir, ts.trash} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	ents, err := os.ReadDir(ts.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		t, err := ts.openTopic(filepath.Join(ts.dir, e.Name()), clean)
		if err != nil {
			ts.close()
			return nil, err
		}
		ts.m[t.meta.Name] = t
	}
	return ts, nil
}

func (ts *topicSet) openTopic(dir string, clean bool) (*topic, error) {
	data, err := os.ReadFile(filepath.Join(dir, "topic.json"))
	if err != nil {
		return nil, fmt.Errorf("read topic metadata: %w", err)
	}
	t := &topic{dir: dir}
	if err := json.Unmarshal(data, &t.meta); err != nil {
		return nil, fmt.Errorf("topic metadata %s: %w", filepath.Join(dir, "topic.json"), err)
	}
	cfg := t.storageConfig(ts.opts, ts.log)
	for i := range t.meta.Partitions {
		cfg.Name = fmt.Sprintf("%s-%d", t.meta.Name, i) // Kafka's name for it, in log lines
		var p *storage.Partition
		if testHookOpenPartition != nil {
			err = testHookOpenPartition(t.meta.Name, i)
		}
		if err == nil {
			p, err = storage.OpenPartition(filepath.Join(dir, strconv.Itoa(int(i))), cfg, clean)
		}
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			err = fmt.Errorf("%w: the open-file limit %d is too low for the partitions of this broker (raise ulimit -n; each partition keeps a file per segment open)", err, fdLimit())
		}
		if err != nil {
			for _, p := range t.parts {
				p.Close()
			}
			return nil, fmt.Errorf("topic %s partition %d: %w", t.meta.Name, i, err)
		}
		t.parts = append(t.parts, p)
	}
	return t, nil
}

// testHookOpenPartition, when set by a test, runs before each partition of
// a topic is opened; an error it returns fails the open as a real one would.
var testHookOpenPartition func(topic string, partition int32) error

// deletable says topic name's cleanup.policy has delete (an unknown topic
// counts as deletable: the caller answers for it).
func (ts *topicSet) deletable(name string) bool {
	t := ts.get(name)
	if t == nil {
		return true
	}
	v, _ := t.value(configDef("cleanup.policy"), ts.opts)
	return slices.Contains(strings.Split(v, ","), "delete")
}

// cleanTargets lists every partition for the log cleaner, which skips
// those whose cleanup.policy lacks compact.
func (ts *topicSet) cleanTargets() []storage.CleanTarget {
	var out []storage.CleanTarget
	for _, t := range ts.list() {
		for i, p := range t.parts {
			out = append(out, storage.CleanTarget{Name: fmt.Sprintf("%s-%d", t.meta.Name, i), P: p})
		}
	}
	return out
}

func (ts *topicSet) get(name string) *topic {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return ts.m[name]
}

// partition returns the log of topic/partition, or nil.
func (ts *topicSet) partition(name string, p int32) *storage.Partition {
	t := ts.get(name)
	if t == nil || p < 0 || int(p) >= len(t.parts) {
		return nil
	}
	return t.parts[p]
}

func (ts *topicSet) list() []*topic {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	out := make([]*topic, 0, len(ts.m))
	for _, t := range ts.m {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *topic) int {
		switch {
		case a.meta.Name < b.meta.Name:
			return -1
		case a.meta.Name > b.meta.Name:
			return 1
		}
		return 0
	})
	return out
}

// groupTopics lists the topics with their ids and partition counts, for
// the group coordinator's server-side assignment.
func (ts *topicSet) groupTopics() map[string]group.TopicInfo {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	out := make(map[string]group.TopicInfo, len(ts.m))
	for name, t := range ts.m {
		out[name] = group.TopicInfo{ID: t.id(), Partitions: int32(len(t.parts))}
	}
	return out
}

// validTopicName applies Kafka's rules, so a name that works here works on
// a real cluster too.
func validTopicName(name string) error {
	if name == "" || name == "." || name == ".." {
		return errorf(kerr.InvalidTopicException, "topic name %q is not allowed", name)
	}
	if len(name) > MaxTopicNameLen {
		return errorf(kerr.InvalidTopicException, "topic name is %d characters; the limit is %d", len(name), MaxTopicNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return errorf(kerr.InvalidTopicException, "topic name %q: use only letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// checkConfigs validates topic configs given at creation.
func checkConfigs(configs map[string]string) error {
	for k, v := range configs {
		def := configDef(k)
		if def == nil {
			names := make([]string, len(topicConfigDefs))
			for i, d := range topicConfigDefs {
				names[i] = d.name
			}
			return errorf(kerr.InvalidConfig, "topic config %q is not supported by the built-in broker; supported: %s", k, strings.Join(names, ", "))
		}
		if err := def.check(v); err != nil {
			return errorf(kerr.InvalidConfig, "topic config %s=%q: %v", k, v, err)
		}
	}
	// As Kafka's LogConfig.validate.
	minLag, maxLag := configs["min.compaction.lag.ms"], configs["max.compaction.lag.ms"]
	if minLag != "" && maxLag != "" && atoi(minLag) > atoi(maxLag) {
		return errorf(kerr.InvalidConfig, "conflict topic config setting min.compaction.lag.ms (%s) > max.compaction.lag.ms (%s): lower the first or raise the second", minLag, maxLag)
	}
	return nil
}

// create makes a topic. Everything that can refuse it is checked before
// anything is written; then the directory is built under a temporary name
// in the trash, synced and renamed into place, so a crash leaves the topic
// whole or absent (the trash is emptied on open), and a failure opening its
// partitions moves it back out, so the same topic can be created again.
func (ts *topicSet) create(name string, partitions int32, configs map[string]string, validateOnly bool) (*topic, error) {
	if err := validTopicName(name); err != nil {
		return nil, err
	}
	if isInternalTopic(name) {
		return nil, internalTopicError("create")
	}
	if partitions == -1 {
		partitions = ts.opts.DefaultPartitions
	}
	if partitions < 1 || partitions > MaxPartitionsPerTopic {
		return nil, errorf(kerr.InvalidPartitions, "%d partitions: use 1 to %d, the per-topic limit of the built-in broker", partitions, MaxPartitionsPerTopic)
	}
	if err := checkConfigs(configs); err != nil {
		return nil, err
	}
	ts.opMu.Lock()
	defer ts.opMu.Unlock()
	if ts.get(name) != nil {
		return nil, errorf(kerr.TopicAlreadyExists, "topic %s already exists", name)
	}
	if err := ts.checkCapacity(partitions); err != nil {
		return nil, err
	}
	if validateOnly {
		return nil, nil
	}
	meta := topicMeta{Name: name, Partitions: partitions, Configs: configs, ID: newTopicID()}
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(ts.dir, name)
	if _, err := os.Lstat(dir); err == nil {
		return nil, errorf(kerr.KafkaStorageError, "cannot create topic %s: %s exists but is not a topic the broker opened; move it away", name, dir)
	}
	if err := ts.build(dir, data, partitions); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	t, err := ts.openTopic(dir, true)
	if err != nil {
		// Out of descriptors, a disk error: take it back out, so nothing is
		// left behind and the topic can be created again.
		if derr := ts.discard(dir); derr != nil {
			return nil, fmt.Errorf("create topic %s: %w (and removing it again failed: %v)", name, err, derr)
		}
		return nil, fmt.Errorf("create topic %s: %w; nothing was kept", name, err)
	}
	ts.mu.Lock()
	ts.m[name] = t
	ts.mu.Unlock()
	ts.log.Info("created topic", "topic", name, "partitions", partitions)
	return t, nil
}

// build writes a topic's metadata and partition directories under a
// temporary name in the trash and renames it to dir. The partitions' first
// segments are made when the topic is opened: building them here too would
// double the files and fsyncs of a large topic, and one reopened after a
// crash makes any still missing the same way.
func (ts *topicSet) build(dir string, meta []byte, partitions int32) error {
	tmp, err := os.MkdirTemp(ts.trash, "create-")
	if err != nil {
		return err
	}
	err = durable.WriteFile(filepath.Join(tmp, "topic.json"), meta)
	for i := range partitions {
		if err != nil {
			break
		}
		err = os.Mkdir(filepath.Join(tmp, strconv.Itoa(int(i))), 0o755)
	}
	if err == nil {
		err = durable.SyncDir(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := durable.SyncDir(ts.dir); err != nil {
		ts.discard(dir)
		return err
	}
	return nil
}

// discard moves a topic directory to the trash and removes it there; the
// rename is what counts, a crash before the removal is finished on open.
func (ts *topicSet) discard(dir string) error {
	dead := filepath.Join(ts.trash, fmt.Sprintf("deleted-%d", time.Now().UnixNano()))
	if err := os.Rename(dir, dead); err != nil {
		return err
	}
	err := durable.SyncDir(ts.dir)
	return errors.Join(err, os.RemoveAll(dead))
}

// partitionCount is the partitions of all topics.
func (ts *topicSet) partitionCount() int {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	n := 0
	for _, t := range ts.m {
		n += len(t.parts)
	}
	return n
}

// checkCapacity refuses partitions the broker could not keep open: over
// Options.MaxPartitions in all, or more than the open-file limit has left.
// Partitions hold their descriptors for good, and a broker out of them
// cannot accept clients, roll segments or even reopen its data after a
// restart.
func (ts *topicSet) checkCapacity(n int32) error {
	have := ts.partitionCount()
	if have+int(n) > ts.opts.MaxPartitions {
		return errorf(kerr.PolicyViolation, "%d more partitions would make %d on this broker, over its limit of %d (%s; by default what the open-file limit allows, %d descriptors each after connections: raise ulimit -n)",
			n, have+int(n), ts.opts.MaxPartitions, ts.opts.flag("max-partitions"), fdsPerPartition)
	}
	limit, open := fdLimit(), openFDs()
	if limit == 0 || open < 0 {
		return nil
	}
	// Partitions with many segments hold more than fdsPerPartition, so
	// the descriptors actually open are checked too, keeping those that
	// connections may still take and the reserve.
	conns := 0
	if ts.openConns != nil {
		conns = ts.openConns()
	}
	free := int64(limit) - int64(open) - fdReserve - int64(max(ts.opts.MaxConnections-conns, 0))
	if int64(n) > free {
		return errorf(kerr.PolicyViolation, "%d partitions need %d more open files; of the open-file limit %d, %d are open and %d kept for connections (%s) and the broker, leaving %d: raise ulimit -n or create fewer partitions",
			n, n, limit, open, fdReserve+max(ts.opts.MaxConnections-conns, 0), ts.opts.flag("max-connections"), max(free, 0))
	}
	return nil
}

// delete removes a topic and its data from disk.
func (ts *topicSet) delete(name string) error {
	ts.opMu.Lock()
	defer ts.opMu.Unlock()
	ts.mu.Lock()
	t, ok := ts.m[name]
	if !ok {
		ts.mu.Unlock()
		return errorf(kerr.UnknownTopicOrPartition, "topic %s does not exist", name)
	}
	delete(ts.m, name)
	ts.mu.Unlock()
	var errs []error
	for _, p := range t.parts {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	// Rename first so a crash mid-delete leaves nothing that looks like a
	// topic; the trash is emptied on open.
	dead := filepath.Join(ts.trash, fmt.Sprintf("deleted-%d", time.Now().UnixNano()))
	if err := os.Rename(t.dir, dead); err != nil {
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	if err := durable.SyncDir(ts.dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dead); err != nil {
		errs = append(errs, err)
	}
	ts.log.Info("deleted topic", "topic", name)
	return errors.Join(errs...)
}

func (ts *topicSet) enforceRetention(now time.Time) {
	for _, t := range ts.list() {
		for i, p := range t.parts {
			if _, err := p.EnforceRetention(now); err != nil {
				ts.log.Error("retention failed", "topic", t.meta.Name, "partition", i, "err", err)
			}
			if n := p.ExpireProducers(now); n > 0 {
				ts.log.Info("forgot idle idempotent producers", "topic", t.meta.Name, "partition", i, "producers", n, "idle_for", storage.ProducerIDExpiration)
			}
		}
	}
}

// maxProducerID is the largest producer id any partition tracks, or -1.
func (ts *topicSet) maxProducerID() int64 {
	m := int64(-1)
	for _, t := range ts.list() {
		for _, p := range t.parts {
			m = max(m, p.MaxProducerID())
		}
	}
	return m
}

func (ts *topicSet) close() error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var errs []error
	for _, t := range ts.m {
		for _, p := range t.parts {
			if err := p.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (ts *topicSet) unlock() {
	if ts.lock != nil {
		ts.lock.Close()
	}
}
