package pluginpb

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// bufferPool is gRPC's buffer pool for plugin connections. gRPC's own
// pools zero every buffer they hand out; for megabyte batches that showed
// up as the largest single cost in a profile (memclr), and it buys nothing
// here: gRPC fills a receive buffer completely before anyone reads it, and
// both ends of the connection are ours.
type bufferPool struct {
	tiers [maxPoolShift - minPoolShift + 1]sync.Pool
}

const (
	minPoolShift = 8  // 256 B
	maxPoolShift = 28 // 256 MiB = MaxMessageBytes; larger buffers are not pooled
)

var _ mem.BufferPool = (*bufferPool)(nil)

var sharedPool = &bufferPool{}

func tier(n int) (int, bool) {
	if n <= 1<<minPoolShift {
		return 0, true
	}
	s := bits.Len(uint(n - 1)) // smallest s with 1<<s >= n
	if s > maxPoolShift {
		return 0, false
	}
	return s - minPoolShift, true
}

func (p *bufferPool) Get(n int) *[]byte {
	t, ok := tier(n)
	if !ok {
		b := make([]byte, n)
		return &b
	}
	if bp, _ := p.tiers[t].Get().(*[]byte); bp != nil {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(t+minPoolShift))
	return &b
}

func (p *bufferPool) Put(bp *[]byte) {
	c := cap(*bp)
	t, ok := tier(c)
	if !ok || c != 1<<(t+minPoolShift) {
		return // not one of ours
	}
	*bp = (*bp)[:0]
	p.tiers[t].Put(bp)
}

// ResponseBuffer returns an empty buffer with room for n bytes, for
// ProcessResponse.Records on the plugin side: the codec recycles it once
// the response is written, so the caller must not keep it.
func ResponseBuffer(n int) []byte {
	return (*sharedPool.Get(n))[:0]
}
