package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/sluicehq/sluice/broker/acl"
	"github.com/sluicehq/sluice/broker/group"
	"github.com/sluicehq/sluice/broker/quota"
	"github.com/sluicehq/sluice/broker/storage"
	"github.com/sluicehq/sluice/broker/txn"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/durable"
)

// Options configure a Broker. Zero values take the defaults named.
type Options struct {
	// NodeID is the broker's node id in metadata (default 0).
	NodeID int32
	// AdvertisedAddr is the host:port clients are told to connect to. By
	// default each connection is told the address it connected to.
	AdvertisedAddr string
	// AutoCreateTopics creates a topic the first time a producer or
	// metadata request names it, with DefaultPartitions partitions. Off by
	// default so a typo does not silently make a topic.
	AutoCreateTopics bool
	// DefaultPartitions is the partition count of auto-created topics and of
	// CreateTopics asking for -1 (default 1).
	DefaultPartitions int32
	// SegmentBytes, SegmentAge, RetentionAge and RetentionBytes are the
	// defaults of the topic configs segment.bytes, segment.ms, retention.ms
	// and retention.bytes (defaults 1 GiB, 7 days, 168 hours, unlimited).
	SegmentBytes   int64
	SegmentAge     time.Duration
	RetentionAge   time.Duration
	RetentionBytes int64
	// RetentionCheckInterval is how often retention runs (default 5 minutes,
	// as Kafka's log.retention.check.interval.ms).
	RetentionCheckInterval time.Duration
	// The log cleaner of topics whose cleanup.policy has compact
	// (storage.Cleaner): the most memory of its offset maps (default
	// storage.DefaultCleanerBufferBytes, 32 MiB; Kafka's
	// log.cleaner.dedupe.buffer.size), its I/O bound in bytes per second
	// (0: none; log.cleaner.io.max.bytes.per.second), its threads
	// (default 1; log.cleaner.threads) and its pause when idle (default
	// storage.DefaultCleanerBackoff; log.cleaner.backoff.ms).
	CleanerBufferBytes      int64
	CleanerIOBytesPerSecond float64
	CleanerThreads          int
	CleanerBackoff          time.Duration
	// Logger receives the broker's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics, if set, receives the broker's measurements; see NewMetrics.
	Metrics *Metrics
	// ACL turns authorization on: every request is checked against the
	// ACLs kept in the data directory (package broker/acl), which
	// CreateAcls, DescribeAcls and DeleteAcls manage (kafka-acls.sh, sluice
	// acl). Without it every client may do anything, and those requests
	// answer SECURITY_DISABLED.
	ACL bool
	// SuperUsers are principals ("User:admin") the ACLs do not apply to.
	SuperUsers []string
	// AllowIfNoACL allows an operation on a resource no ACL names, as
	// Kafka's allow.everyone.if.no.acl.found; by default it is denied.
	AllowIfNoACL bool
	// UsersFile, if set, is a YAML list of SASL users ({name, password,
	// mechanisms}; see ReadUsersFile) applied at every Open: the users it
	// names get its passwords, users it made before and no longer names
	// are removed, and users added with AlterUserScramCredentials that it
	// does not name stay. Credentials are kept salted in the data
	// directory (users.json), never the passwords.
	UsersFile string

	// Resource limits (see limits.go for why each default is what it is).
	// IdleTimeout closes a connection that sends nothing and waits for
	// nothing (default DefaultIdleTimeout); RequestTimeout closes one that
	// starts a request frame and does not finish it in time (default
	// DefaultRequestTimeout).
	IdleTimeout    time.Duration
	RequestTimeout time.Duration
	// MaxRequestBytes bounds the bytes of requests in flight across all
	// connections, MaxConnRequestBytes those of one connection (defaults
	// DefaultRequestBytes, DefaultConnRequestBytes). Over either, the
	// connection is not read until responses go out.
	MaxRequestBytes     int64
	MaxConnRequestBytes int64
	// MaxConnections caps open connections (default DefaultMaxConnections,
	// lowered to a quarter of the open-file limit); MaxConnectionsPerIP
	// caps those from one client address (default 0: no cap). Connections
	// over either are closed at once.
	MaxConnections      int
	MaxConnectionsPerIP int
	// MaxPartitions caps the partitions of all topics together (default:
	// what the open-file limit leaves after connections, fdsPerPartition
	// descriptors each).
	MaxPartitions int
	// FlagPrefix goes before the flag names that messages tell the user
	// to change ("--" + FlagPrefix + "max-partitions"): empty for sluice
	// broker, "broker-" for the broker that sluice run and sluice daemon
	// embed, so a message names a flag of the command that was run.
	FlagPrefix string

	// ConsumerGroupSessionTimeout and ConsumerGroupHeartbeatInterval are
	// Kafka's group.consumer.session.timeout.ms (default 45s) and
	// group.consumer.heartbeat.interval.ms (default 5s): consumer-protocol
	// (KIP-848) members are told the interval and dropped after the
	// timeout without a heartbeat.
	ConsumerGroupSessionTimeout    time.Duration
	ConsumerGroupHeartbeatInterval time.Duration

	// dynamic holds the broker configs AlterConfigs changed (configs.go);
	// set by Open, it is shared by every copy of the options.
	dynamic *dynamicConfigs
}

func (o Options) withDefaults() Options {
	if o.DefaultPartitions <= 0 {
		o.DefaultPartitions = 1
	}
	if o.RetentionCheckInterval <= 0 {
		o.RetentionCheckInterval = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o.resourceDefaults(fdLimit())
}

// flag is the command-line flag setting name, as messages name it.
func (o *Options) flag(name string) string { return "--" + o.FlagPrefix + name }

// Broker is a single-node Kafka broker serving topics stored under one
// directory.
type Broker struct {
	dir       string
	opts      Options
	log       *slog.Logger
	clusterID string
	topics    *topicSet
	groups    *group.Coordinator
	offsets   *group.OffsetStore
	metrics   *Metrics
	// producerIDs allocates producer ids, idempotent and transactional.
	producerIDs *producerIDs
	txns        *txn.Coordinator
	txnErrors   logLimiter // of failed completions and timeout checks
	// cleaner compacts the logs of compacted topics in the background.
	cleaner *storage.Cleaner
	// authz decides requests when Options.ACL is set; nil otherwise.
	authz     *acl.Authorizer
	deniedLog logLimiter  // of requests denied by ACLs
	users     *userStore  // SASL users
	authLog   authLimiter // of failed logins
	// quotas are the client quotas (AlterClientQuotas); sensors measure
	// clients against them.
	quotas  *quota.Store
	sensors *quota.Sensors
	// testHookLogin, set by tests before listening, sees each
	// connection's principal once it is known (TLS or SASL).
	testHookLogin func(principal string)

	// requestBytes is the budget of request bytes in flight across all
	// connections (Options.MaxRequestBytes).
	requestBytes *semaphore.Weighted
	// largeRequestBytes is the part of it frames over frameChunkBytes may
	// hold (1/largeFrameShare).
	largeRequestBytes *semaphore.Weighted
	refusals          everyLimiter // log lines of refused connections
	connErrors        everyLimiter // log lines of connections closed for errors

	ctx    context.Context // cancelled by Close: ends long-polls and loops
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	firstAddr string
	conns     map[*conn]struct{}
	connsByIP map[string]int // open connections per client address
	// throttledConns are connections over their IP's
	// connection_creation_rate, held unserved until their timer closes
	// them (or Close does).
	throttledConns map[net.Conn]*time.Timer
	closed         bool
	wg             sync.WaitGroup // connections and background loops
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("broker closed")

const (
	cleanShutdownFile = ".clean-shutdown"
	clusterIDFile     = "cluster.id"
	groupsDir         = "groups"
	txnsDir           = "transactions"
)

// every runs fn at each tick of interval until the broker closes; the
// broker's chores (retention, group and transaction timeouts) run on it.
func (b *Broker) every(interval time.Duration, fn func(now time.Time)) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.ctx.Done():
				return
			case now := <-t.C:
				fn(now)
			}
		}
	}()
}

// Open opens (creating if needed) the broker data directory dir and its
// topics. After an unclean stop it checks the unflushed tail of every
// partition and cuts torn batches. If it fails, it leaves nothing open: the
// directory lock is released and the directory can be opened again at once.
func Open(dir string, opts Options) (_ *Broker, err error) {
	opts = opts.withDefaults()
	if opts.NodeID < 0 {
		return nil, fmt.Errorf("node id %d: use 0 or more, as Kafka's node.id", opts.NodeID)
	}
	if opts.AdvertisedAddr != "" {
		if _, port, err := net.SplitHostPort(opts.AdvertisedAddr); err != nil || port == "" {
			return nil, fmt.Errorf("advertised address %q: use host:port, e.g. kafka.example.com:9092", opts.AdvertisedAddr)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create broker data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	b := &Broker{dir: dir, opts: opts, log: opts.Logger,
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}, connsByIP: map[string]int{},
		throttledConns:    map[net.Conn]*time.Timer{},
		requestBytes:      semaphore.NewWeighted(opts.MaxRequestBytes),
		largeRequestBytes: semaphore.NewWeighted(max(opts.MaxRequestBytes/largeFrameShare, frameChunkBytes)),
		refusals:          everyLimiter{interval: refusalLogInterval},
		connErrors:        everyLimiter{interval: refusalLogInterval}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	// The one undo path: whatever was opened before a failure is closed
	// here, the lock last.
	defer func() {
		if err != nil {
			b.cancel()
			b.closeStores()
			lock.Close()
		}
	}()
	marker := filepath.Join(dir, cleanShutdownFile)
	_, statErr := os.Stat(marker)
	clean := statErr == nil
	// From here on a crash is unclean until Close writes the marker again.
	if clean {
		if err := os.Remove(marker); err != nil {
			return nil, fmt.Errorf("remove clean-shutdown marker: %w", err)
		}
		if err := durable.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	if b.clusterID, err = loadClusterID(dir); err != nil {
		return nil, err
	}
	if b.users, err = openUsers(dir, opts.UsersFile); err != nil {
		return nil, err
	}
	if opts.UsersFile != "" {
		// The file holds passwords in clear; say so if others can read it.
		if fi, err := os.Stat(opts.UsersFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			b.log.Warn("SASL users file is readable by other users; chmod 600 it", "file", opts.UsersFile, "mode", fi.Mode().Perm().String())
		}
	}
	if opts.ACL {
		if b.authz, err = acl.Open(dir, acl.Options{SuperUsers: opts.SuperUsers, AllowIfNoACL: opts.AllowIfNoACL}); err != nil {
			return nil, err
		}
	}
	b.metrics = opts.Metrics
	if b.metrics == nil {
		b.metrics = NewMetrics()
	}
	if opts.dynamic, err = loadDynamicConfigs(dir); err != nil {
		return nil, err
	}
	if b.quotas, err = quota.Open(dir); err != nil {
		return nil, err
	}
	b.sensors = quota.NewSensors()
	b.opts = opts
	if b.topics, err = openTopics(dir, opts, clean, lock); err != nil {
		return nil, err
	}
	b.cleaner = storage.NewCleaner(storage.CleanerOptions{BufferBytes: opts.CleanerBufferBytes, IOBytesPerSecond: opts.CleanerIOBytesPerSecond,
		Threads: opts.CleanerThreads, Backoff: opts.CleanerBackoff, Logger: b.log}, b.topics.cleanTargets)
	b.topics.cleanerWake = b.cleaner.Wake
	b.topics.openConns = func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.conns)
	}
	if n := b.topics.partitionCount(); n > opts.MaxPartitions {
		b.log.Warn("more partitions than the limit; creating topics is refused until some are deleted or "+opts.flag("max-partitions")+" (or ulimit -n) is raised",
			"partitions", n, "max_partitions", opts.MaxPartitions)
	}
	b.txns, err = txn.Open(filepath.Join(dir, txnsDir), func() (int64, error) { return b.producerIDs.allocate() }, nil)
	if err != nil {
		return nil, fmt.Errorf("open transaction state: %w", err)
	}
	b.producerIDs, err = openProducerIDs(dir, max(b.topics.maxProducerID(), b.txns.MaxProducerID())+1)
	if err != nil {
		return nil, err
	}
	// Committed offsets live beside the topics directory.
	if b.offsets, err = group.OpenOffsetStore(filepath.Join(dir, groupsDir)); err != nil {
		return nil, fmt.Errorf("open committed offsets: %w", err)
	}
	b.groups = group.NewCoordinator(b.offsets, nil)
	b.groups.Topics = b.topics.groupTopics
	b.groups.ConsumerSessionTimeout = opts.ConsumerGroupSessionTimeout
	b.groups.ConsumerHeartbeatInterval = opts.ConsumerGroupHeartbeatInterval
	b.metrics.attach(b)
	// Transactions decided before a crash get their markers before any
	// client is served.
	for _, comp := range b.txns.Pending() {
		b.log.Info("completing transaction decided before the restart", "transactional_id", comp.TransactionalID, "commit", comp.Commit)
		b.complete(comp)
	}
	// Retention deletes old segments; the group coordinator expires
	// members and ends rebalance phases on time; the transaction
	// coordinator aborts timed-out transactions and retries completions
	// that failed.
	b.every(b.opts.RetentionCheckInterval, b.topics.enforceRetention)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.cleaner.Run(b.ctx)
	}()
	b.every(group.TickInterval, func(time.Time) { b.groups.Tick() })
	b.every(txn.TickInterval, func(time.Time) { b.runTxnChores() })
	b.every(sensorExpiryInterval, b.sensors.Expire)
	return b, nil
}

// CleanNow compacts every partition of every compacted topic that has
// anything to clean, whatever its min.cleanable.dirty.ratio, and returns
// when done: for tests and tools that must see a compacted log. The
// active segment is never cleaned.
func (b *Broker) CleanNow(ctx context.Context) error {
	return b.cleaner.CleanNow(ctx)
}

// closeStores closes the stores Open opened, those it got to, in the order
// Close closes them. The directory lock stays with the caller.
func (b *Broker) closeStores() error {
	var errs []error
	if b.txns != nil {
		errs = append(errs, b.txns.Close())
	}
	if b.offsets != nil {
		errs = append(errs, b.offsets.Close())
	}
	if b.topics != nil {
		errs = append(errs, b.topics.close())
	}
	return errors.Join(errs...)
}

func loadClusterID(dir string) (string, error) {
	path := filepath.Join(dir, clusterIDFile)
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		return string(data), nil
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := "sluice-" + hex.EncodeToString(raw[:])
	if err := durable.WriteFile(path, []byte(id)); err != nil {
		return "", fmt.Errorf("write cluster id: %w", err)
	}
	return id, nil
}

// Listen opens a TCP listener on addr ("127.0.0.1:0" picks a port) and
// serves it in the background; the returned listener's Addr tells where.
// With tlsConfig non-nil, connections are TLS (an SSL listener). ListenWith
// opens the other kinds.
func (b *Broker) Listen(addr string, tlsConfig *tls.Config) (net.Listener, error) {
	cfg := ListenerConfig{Addr: addr, Security: Plaintext, TLS: tlsConfig}
	if tlsConfig != nil {
		cfg.Security = SSL
	}
	return b.ListenWith(cfg)
}

// Serve accepts connections on l until Close. It returns ErrClosed after
// Close, or the accept error that stopped it.
// A listener from tls.NewListener serves as SSL; SASL listeners are opened
// with ListenWith.
func (b *Broker) Serve(l net.Listener) error {
	if err := b.register(l, Plaintext); err != nil {
		return err
	}
	return b.accept(l, ListenerConfig{Security: Plaintext})
}

func (b *Broker) register(l net.Listener, security SecurityProtocol) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		l.Close()
		return ErrClosed
	}
	b.listeners[l] = struct{}{}
	if b.firstAddr == "" {
		b.firstAddr = l.Addr().String()
	}
	b.log.Info("listening on "+l.Addr().String(), "security", string(security))
	return nil
}

// acceptBackoff spaces out retries of a failing Accept.
var acceptBackoff = backoff.Policy{Min: 5 * time.Millisecond, Max: time.Second}

func (b *Broker) accept(l net.Listener, cfg ListenerConfig) error {
	failures := 0 // in a row
	for {
		nc, err := l.Accept()
		if err != nil {
			b.mu.Lock()
			closed := b.closed
			b.mu.Unlock()
			if closed {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				b.mu.Lock()
				delete(b.listeners, l)
				b.mu.Unlock()
				return err
			}
			// Out of file descriptors and the like: back off and keep
			// serving the connections we have.
			failures++
			delay := acceptBackoff.Delay(failures)
			b.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		failures = 0
		ip := hostOf(nc.RemoteAddr())
		if b.throttleConnection(nc, ip) {
			continue
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			nc.Close()
			return ErrClosed
		}
		if refusal := b.overConnLimit(ip); refusal != "" {
			b.mu.Unlock()
			// Closed at once, before any buffer or goroutine: the
			// descriptor is back and the clients already served go on.
			nc.Close()
			b.metrics.connectionsRefused.Inc()
			if ok, dropped := b.refusals.allow(time.Now()); ok {
				b.log.Warn("refused connection: "+refusal, "remote", nc.RemoteAddr().String(), "refused_since_last_log", dropped)
			}
			continue
		}
		c := newConn(b, nc, cfg.Security)
		c.advertisedHost = cfg.AdvertisedHost
		b.conns[c] = struct{}{}
		b.connsByIP[ip]++
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			c.serve()
			b.mu.Lock()
			delete(b.conns, c)
			if b.connsByIP[ip]--; b.connsByIP[ip] <= 0 {
				delete(b.connsByIP, ip)
			}
			b.mu.Unlock()
		}()
	}
}

// throttleConnection applies the connection_creation_rate of the
// client's address, as Kafka's ConnectionQuotas: a connection over it is
// held unserved for the throttle (at most a second), then closed, so the
// client backs off rather than reconnecting at once. It reports whether nc
// was taken.
func (b *Broker) throttleConnection(nc net.Conn, ip string) bool {
	key, bound, ok := b.quotas.ResolveIP(ip)
	if !ok {
		return false
	}
	d := b.sensors.RecordConnection(key, bound, time.Now())
	if d <= 0 {
		return false
	}
	b.metrics.throttled(quotaConnection, d)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		nc.Close()
		return true
	}
	b.throttledConns[nc] = time.AfterFunc(d, func() {
		b.mu.Lock()
		delete(b.throttledConns, nc)
		b.mu.Unlock()
		nc.Close()
	})
	if ok, dropped := b.refusals.allow(time.Now()); ok {
		b.log.Warn("throttled connection: over its address's connection_creation_rate quota; closing it after the throttle",
			"remote", nc.RemoteAddr().String(), "throttle", d, "quota_per_sec", bound, "refused_since_last_log", dropped)
	}
	return true
}

// overConnLimit says why a new connection from ip must be refused, or "".
// b.mu is held.
func (b *Broker) overConnLimit(ip string) string {
	if n := len(b.conns); n >= b.opts.MaxConnections {
		return fmt.Sprintf("%d connections open, the limit (raise %s, or the open-file limit it is derived from)", n, b.opts.flag("max-connections"))
	}
	if max := b.opts.MaxConnectionsPerIP; max > 0 && b.connsByIP[ip] >= max {
		return fmt.Sprintf("%d connections open from %s, the per-address limit (raise %s)", b.connsByIP[ip], ip, b.opts.flag("max-connections-per-ip"))
	}
	return ""
}

// Close stops the listeners, closes every connection, syncs and closes all
// partition logs and marks the directory cleanly shut down.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for l := range b.listeners {
		l.Close()
	}
	for c := range b.conns {
		c.close()
	}
	for nc, t := range b.throttledConns {
		t.Stop()
		nc.Close()
	}
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	err := b.closeStores()
	if err == nil {
		err = durable.WriteFile(filepath.Join(b.dir, cleanShutdownFile), nil)
	}
	b.topics.unlock()
	return err
}

// Addr is the address of a listener the broker serves (the first one
// started, when there are several), or "" before Serve or Listen. Use it as
// the bootstrap address of in-process clients.
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.firstAddr
}

// Dir is the broker's data directory.
func (b *Broker) Dir() string { return b.dir }

// ClusterID is the id the broker reports in metadata; it is kept in the data
// directory.
func (b *Broker) ClusterID() string { return b.clusterID }
