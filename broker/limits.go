package broker

import "time"

// Hard limits of the protocol server. They bound what one client can make the
// broker allocate or hold; each says why it has its value.
const (
	// MaxFrameBytes caps one request frame. Kafka's socket.request.max.bytes
	// default is 100 MiB; a frame larger than this is refused before any
	// allocation and the connection is closed.
	MaxFrameBytes = 100 << 20

	// MaxInFlightPerConn bounds requests read from one connection whose
	// responses are not written yet (responses go out in request order, so a
	// long-polling fetch holds the ones behind it). Reading stops when full.
	MaxInFlightPerConn = 64

	// MaxPartitionsPerTopic bounds CreateTopics: each partition is a
	// directory and open files.
	MaxPartitionsPerTopic = 10000

	// MaxTopicNameLen is Kafka's limit (249), which keeps a topic name plus
	// a partition suffix a valid file name.
	MaxTopicNameLen = 249

	// MaxIdle closes a connection that sends nothing for this long, as
	// Kafka's connections.max.idle.ms (10 minutes) does; clients reconnect
	// when they need to.
	MaxIdle = 10 * time.Minute

	// MaxFetchWait caps a fetch long-poll whatever the client asks, so a
	// closing broker or a stuck client never holds a connection for long.
	MaxFetchWait = 30 * time.Second

	// DefaultMaxMessageBytes is Kafka's message.max.bytes default: the largest
	// record batch a produce may carry.
	DefaultMaxMessageBytes = 1048588

	// maxReusedFrameBytes caps the produce frame buffer a connection keeps
	// between requests; larger frames are allocated each time.
	maxReusedFrameBytes = 16 << 20

	// readBufferBytes and writeBufferBytes size each connection's buffers.
	readBufferBytes  = 64 << 10
	writeBufferBytes = 64 << 10
)
