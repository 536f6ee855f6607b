package broker

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Hard limits of the protocol server. They bound what one client can make the
// broker allocate or hold; each says why it has its value. The Default*
// ones can be changed in Options (and by flags of `sluice broker`).
const (
	// MaxFrameBytes caps one request frame. Kafka's socket.request.max.bytes
	// default is 100 MiB; a frame larger than this is refused before any
	// allocation and the connection is closed.
	MaxFrameBytes = 100 << 20

	// maxOtherFrameBytes caps a request frame other than Produce. Decoding
	// turns each array element into a struct many times its encoded size
	// (a 2-byte Metadata topic becomes about 48 bytes, 24 times), so a
	// 100 MiB Metadata frame allocated 2.4 GB; 8 MiB bounds one request
	// near 200 MiB, and is still twice a Fetch, OffsetCommit or Metadata
	// request naming 100,000 partitions.
	maxOtherFrameBytes = 8 << 20

	// sensorExpiryInterval is how often idle quota sensors are dropped
	// (quota.SensorIdleExpiry); a minute keeps the idle ones at most an
	// hour and a minute, and a pass is a walk over the idle tail only.
	sensorExpiryInterval = time.Minute

	// MaxInFlightPerConn bounds requests read from one connection whose
	// responses are not written yet (responses go out in request order, so a
	// long-polling fetch holds the ones behind it). Reading stops when full.
	MaxInFlightPerConn = 64

	// MaxPartitionsPerTopic bounds CreateTopics whatever the descriptor
	// limit allows: each partition is a directory and at least one open
	// file, and opening ten thousand of them already takes seconds.
	MaxPartitionsPerTopic = 10000

	// MaxTopicNameLen is Kafka's limit (249), which keeps a topic name plus
	// a partition suffix a valid file name.
	MaxTopicNameLen = 249

	// DefaultIdleTimeout closes a connection that sends nothing and waits
	// for nothing this long. Kafka's connections.max.idle.ms is 10 minutes,
	// which lets idle or abandoned sockets hold descriptors and buffers;
	// a minute is twice the longest fetch long-poll (MaxFetchWait), and
	// clients reconnect when they need to.
	DefaultIdleTimeout = time.Minute

	// DefaultRequestTimeout is how long a client has to send the rest of a
	// request frame once it started it (and once the broker is ready to
	// read it). Kafka clients give up on a request after 30 s
	// (request.timeout.ms), so a frame slower than that is a stuck or
	// hostile client holding memory and a connection (slowloris).
	DefaultRequestTimeout = 30 * time.Second

	// DefaultConnRequestBytes bounds the bytes of requests one connection
	// has in flight (read, response not yet written). One largest frame
	// fits; further requests wait until responses go out.
	DefaultConnRequestBytes = MaxFrameBytes

	// DefaultRequestBytes bounds the bytes of requests in flight across
	// all connections, like Kafka's queued.max.request.bytes: the memory
	// requests can take whatever the number of clients. 256 MiB lets two
	// largest frames, or a few hundred 1 MiB produce requests, be in flight
	// at once; when it is used up, connections stop being read until
	// responses are written.
	DefaultRequestBytes = 256 << 20

	// DefaultMaxConnections caps open client connections (Kafka's
	// max.connections). Each holds a descriptor, two goroutines and about
	// 128 KiB of buffers, so the cap bounds idle memory near 128 MiB; it is
	// lowered further to what the descriptor limit allows (connFDShare).
	DefaultMaxConnections = 1024

	// fdReserve is the descriptors kept out of every budget: listeners, the
	// data directory lock, group and transaction stores, index files
	// written when a segment rolls, log and metrics sockets.
	fdReserve = 64

	// connFDShare is the share of the descriptor limit (after fdReserve)
	// connections may take by default; partitions keep theirs for good
	// while connections come and go, so they get the rest.
	connFDShare = 4

	// fdsPerPartition is what the default per-broker partition limit
	// budgets for each partition: its active segment and one sealed one.
	// Partitions with more segments hold more, which CreateTopics also
	// checks against the descriptors actually open.
	fdsPerPartition = 2

	// MaxFetchWait caps a fetch long-poll whatever the client asks, so a
	// closing broker or a stuck client never holds a connection for long.
	MaxFetchWait = 30 * time.Second

	// DefaultMaxMessageBytes is Kafka's message.max.bytes default: the largest
	// record batch a produce may carry.
	DefaultMaxMessageBytes = 1048588

	// maxPooledFrameBytes caps the produce frame buffers kept in a pool
	// between requests (produce frames are done with when dispatch
	// returns); larger frames are allocated each time and left to the
	// garbage collector, so a burst of big requests is given back.
	maxPooledFrameBytes = 16 << 20

	// largeFrameShare: frames over frameChunkBytes may together hold only
	// 1/largeFrameShare of the broker's request budget, so clients that
	// announce large frames and stall cannot starve the small requests
	// (metadata, fetches, ordinary produces) that keep others going. It
	// also makes half the budget the largest frame accepted.
	largeFrameShare = 2

	// frameChunkBytes is how much of a frame is allocated before its bytes
	// arrive: a larger frame grows as it is read, so a client that
	// announces 100 MiB and stalls holds budget, not memory.
	frameChunkBytes = 1 << 20

	// readBufferBytes and writeBufferBytes size each connection's buffers.
	readBufferBytes  = 64 << 10
	writeBufferBytes = 64 << 10

	// refusalLogInterval spaces out the log lines of refused connections
	// and frames, so a flood does not flood the log too.
	refusalLogInterval = 10 * time.Second
)

// fdLimit is the process's open-file limit (Go raises the soft limit to the
// hard one at start), or 0 when unknown.
func fdLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == ^uint64(0) {
		return 0
	}
	return rl.Cur
}

// openFDs counts the process's open descriptors, or -1 where /proc does not
// tell.
func openFDs() int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return -1
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return -1
	}
	return len(names) - 1 // the directory being read
}

// resourceDefaults fills the limits left zero in o from the descriptor
// limit, so that connections cannot take the descriptors partitions need
// and the reverse.
func (o Options) resourceDefaults(limit uint64) Options {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultRequestBytes
	}
	if o.MaxConnRequestBytes <= 0 {
		o.MaxConnRequestBytes = DefaultConnRequestBytes
	}
	o.MaxConnRequestBytes = min(o.MaxConnRequestBytes, o.MaxRequestBytes)
	usable := int64(1 << 20) // no known limit: caps that never bind first
	if limit > 0 {
		usable = max(int64(limit)-fdReserve, 2)
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = int(min(DefaultMaxConnections, max(usable/connFDShare, 1)))
	}
	if o.MaxPartitions <= 0 {
		o.MaxPartitions = int(max((usable-int64(o.MaxConnections))/fdsPerPartition, 1))
	}
	return o
}

// everyLimiter lets one event through per interval: rate-limited logging.
type everyLimiter struct {
	interval time.Duration
	last     atomic.Int64
	dropped  atomic.Int64 // events not let through since the last one
}

// allow reports whether to log now and how many events were suppressed
// before this one.
func (l *everyLimiter) allow(now time.Time) (bool, int64) {
	last := l.last.Load()
	if now.UnixNano()-last >= int64(l.interval) && l.last.CompareAndSwap(last, now.UnixNano()) {
		return true, l.dropped.Swap(0)
	}
	l.dropped.Add(1)
	return false, 0
}

// errFrameTooLarge is returned for a frame no budget can take.
func errFrameTooLarge(size int32, limit int64, setting string) error {
	return fmt.Errorf("request frame of %d bytes is over the %d-byte limit; raise %s if a client needs frames this large", size, limit, setting)
}
