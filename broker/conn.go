package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/semaphore"

	"github.com/sluicehq/sluice/broker/storage"
)

// request is one decoded request and where it came from.
type request struct {
	c        *conn
	key      int16
	version  int16
	corr     int32
	clientID string
	msg      kmsg.Request
	// size is the request's bytes after the length, as Kafka's quotas
	// count a produce.
	size int
}

// conn serves one client connection: a reader decodes requests and runs the
// synchronous part of each handler in arrival order (so appends from one
// connection keep their order); a writer finishes the replies in the same
// order and writes them.
type conn struct {
	b      *Broker
	nc     net.Conn
	local  net.Addr // advertised when Options.AdvertisedAddr is not set
	log    *slog.Logger
	ctx    context.Context // ends when the connection or the broker closes
	cancel context.CancelFunc
	queue  chan queued
	// budget is this connection's share of request bytes in flight
	// (Options.MaxConnRequestBytes); inFlight is what it holds of it (and
	// of the broker's), released as responses are written.
	budget   *semaphore.Weighted
	inFlight atomic.Int64
	// principal is who the client proved to be, in Kafka's "User:NAME"
	// form: anonymousPrincipal until SASL or a TLS client certificate says
	// otherwise. The authorizer decides on it.
	principal string
	// host is the client's IP address, which ACL hosts name.
	host string
	// security is the kind of listener the client came through.
	security SecurityProtocol
	// advertisedHost is the listener's ListenerConfig.AdvertisedHost.
	advertisedHost string
	// The login state, touched only by the reader (handlers run there):
	// authenticated once SASL succeeded; sasl is the exchange a
	// SaslHandshake started; closeAfterReply, when set, says why the
	// connection closes once the reply just queued is written (a failed
	// login, a handshake out of sequence), as Kafka closes it.
	authenticated   bool
	sasl            *saslSession
	closeAfterReply string
	// mutedUntil (Unix nanoseconds) is when a quota throttle ends: the
	// next request is not read before (handle_quotas.go).
	mutedUntil atomic.Int64
}

// anonymousPrincipal is the principal of a client that did not
// authenticate, as Kafka names it.
const anonymousPrincipal = "User:ANONYMOUS"

type queued struct {
	req   *request
	reply reply
	// mayBlock says the reply can wait (a long-poll, an fsync): responses
	// buffered before it are flushed first so they are not held up.
	mayBlock bool
	read     time.Time // when the request was read, for latency
	bytes    int64     // of the request budgets, released when written
}

// placeholder marks RecordBatches in an encoded fetch response where file
// bytes go. It is random per process so no real data can match it.
var placeholder = func() []byte {
	p := make([]byte, 16)
	rand.Read(p)
	return p
}()

func newConn(b *Broker, nc net.Conn, security SecurityProtocol) *conn {
	ctx, cancel := context.WithCancel(b.ctx)
	// The address the client reached us on, which works for it even when
	// the listener is on 0.0.0.0.
	return &conn{b: b, nc: nc, local: nc.LocalAddr(), ctx: ctx, cancel: cancel,
		log:   b.log.With("remote", nc.RemoteAddr().String()),
		queue: make(chan queued, MaxInFlightPerConn), principal: anonymousPrincipal,
		host: hostOf(nc.RemoteAddr()), security: security,
		budget: semaphore.NewWeighted(b.opts.MaxConnRequestBytes)}
}

func (c *conn) close() {
	c.cancel()
	c.nc.Close()
}

// advertised is the host and port this connection's clients should use.
func (c *conn) advertised() (string, int32) {
	if c.advertisedHost != "" {
		_, port, _ := net.SplitHostPort(c.local.String())
		p, _ := strconv.Atoi(port)
		return c.advertisedHost, int32(p)
	}
	addr := c.b.opts.AdvertisedAddr
	if addr == "" {
		addr = c.local.String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 9092
	}
	p, _ := strconv.Atoi(port)
	return host, int32(p)
}

func (c *conn) serve() {
	c.b.metrics.connections.Inc()
	defer c.b.metrics.connections.Dec()
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.handshakeTLS(tc); err != nil {
			// A client refused by mTLS fails here (no certificate, or one
			// from another CA); so do port scanners and plain clients.
			if c.ctx.Err() == nil { // not the broker closing
				c.b.authFailed(c, "TLS", "", "TLS handshake: "+err.Error())
			}
			c.close()
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.writeLoop()
	}()
	err := c.readLoop()
	close(c.queue)
	// No more requests: end pending long-polls now rather than at their
	// MaxWait; their responses still go out if the socket takes them.
	c.cancel()
	if err != nil {
		// Rate-limited: a flood of bad clients must not flood the log.
		if ok, dropped := c.b.connErrors.allow(time.Now()); ok {
			c.log.Warn("closing connection", "err", err, "similar_since_last_log", dropped)
		}
		c.close()
	}
	<-done
	c.close()
}

// readLoop reads and dispatches requests until the client goes away (nil)
// or sends something the broker cannot answer (an error to log).
func (c *conn) readLoop() error {
	br := bufio.NewReaderSize(c.nc, readBufferBytes)
	opts := &c.b.opts
	limit, setting := int64(MaxFrameBytes), "nothing: it is the protocol server's hard cap"
	if opts.MaxConnRequestBytes < limit {
		limit, setting = opts.MaxConnRequestBytes, opts.flag("max-connection-request-bytes")
	}
	if large := max(opts.MaxRequestBytes/largeFrameShare, frameChunkBytes); large < limit {
		limit, setting = large, opts.flag("max-request-bytes")+" (frames may take half of it)"
	}
	var sizeBuf [4]byte
	for {
		if err := c.awaitRequest(br); err != nil {
			return c.readError("wait for a request", err)
		}
		// A throttled client's next request waits out the throttle,
		// as Kafka mutes the channel (KIP-219).
		if !c.awaitUnmuted() {
			return nil
		}
		// From its first byte on, a frame must arrive in RequestTimeout.
		c.nc.SetReadDeadline(time.Now().Add(opts.RequestTimeout))
		if _, err := io.ReadFull(br, sizeBuf[:]); err != nil {
			return c.readError("read request size", err)
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if c.sasl != nil && c.sasl.legacy && !c.authenticated {
			// After SaslHandshake v0 the client sends bare SASL tokens,
			// without a Kafka header, until the login completes.
			if size < 0 || size > maxSASLReceiveBytes {
				return fmt.Errorf("SASL token of %d bytes is outside 0..%d", size, maxSASLReceiveBytes)
			}
			// Grown as the bytes arrive, like a request frame.
			token, err := readFrameBody(br, int(size), nil)
			if err != nil {
				return fmt.Errorf("read SASL token of %d bytes: %w", size, err)
			}
			q, ok := c.legacyToken(token)
			if !ok {
				return nil // a failed v0 login is closed without a reply, as Kafka does
			}
			select {
			case c.queue <- q:
			case <-c.ctx.Done():
				return nil
			}
			continue
		}
		// The smallest valid header is key, version and correlation id.
		if size < 8 {
			return fmt.Errorf("request frame of %d bytes is under the 8 of a request header (is this a Kafka client? a TLS client on the plain port?)", size)
		}
		if size > maxSASLReceiveBytes && c.needsLogin() {
			return fmt.Errorf("request frame of %d bytes before SASL login, over the %d allowed", size, maxSASLReceiveBytes)
		}
		if int64(size) > limit {
			return errFrameTooLarge(size, limit, setting)
		}
		// The key decides the cap: only Produce carries bulk data, and
		// other requests decode to many times their bytes.
		key, err := br.Peek(2)
		if err != nil {
			return c.readError("read request key", err)
		}
		produce := int16(binary.BigEndian.Uint16(key)) == int16(kmsg.Produce)
		if !produce && size > maxOtherFrameBytes {
			return fmt.Errorf("%s request frame of %d bytes is over the %d-byte limit of requests other than Produce (split the request)",
				kmsg.NameForKey(int16(binary.BigEndian.Uint16(key))), size, maxOtherFrameBytes)
		}
		// The frame's bytes are reserved before it is read: when the
		// connection's or the broker's budget is used up, this connection
		// is not read (its client waits on TCP) until responses go out.
		if err := c.reserve(int64(size)); err != nil {
			return nil // the connection or the broker is closing
		}
		c.nc.SetReadDeadline(time.Now().Add(opts.RequestTimeout))
		// Produce frames are only read while dispatching (the batches go
		// to the log before dispatch returns), so their buffers go back to
		// a pool. Other requests may keep slices of their frame.
		var pooled *[]byte
		var buf []byte
		produce = produce && size <= maxPooledFrameBytes
		if produce {
			if pooled, _ = framePool.Get().(*[]byte); pooled != nil {
				buf = *pooled
			}
		}
		frame, err := readFrameBody(br, int(size), buf)
		if err != nil {
			c.release(int64(size))
			return c.readError(fmt.Sprintf("read request of %d bytes", size), err)
		}
		c.b.metrics.bytesIn.Add(float64(size + 4))
		started := time.Now()
		req, rep, err := c.dispatch(frame)
		if produce {
			if pooled == nil {
				pooled = new([]byte)
			}
			*pooled = frame[:0]
			framePool.Put(pooled)
		}
		if err != nil {
			c.release(int64(size))
			return err
		}
		rep = req.requestQuota(rep, time.Since(started))
		q := queued{req: req, reply: rep, mayBlock: mayBlock(req.msg), read: started, bytes: int64(size)}
		// Produce batches alias the frame; drop the request so the frame
		// can be collected while the reply waits.
		req.msg = nil
		select {
		case c.queue <- q:
		case <-c.ctx.Done():
			c.release(q.bytes)
			return nil
		}
		if c.closeAfterReply != "" {
			c.log.Debug("closing connection after the reply", "reason", c.closeAfterReply)
			return nil
		}
	}
}

// framePool keeps produce frame buffers between requests; the garbage
// collector empties it when they go unused, so memory is given back.
var framePool sync.Pool

// awaitRequest waits for the first byte of the next request as long as the
// connection may idle. A connection with responses outstanding (a
// long-poll, an fsync) is waiting, not idle.
func (c *conn) awaitRequest(br *bufio.Reader) error {
	for {
		c.nc.SetReadDeadline(time.Now().Add(c.b.opts.IdleTimeout))
		_, err := br.Peek(1)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if c.inFlight.Load() > 0 {
				continue
			}
			c.log.Debug("closing idle connection", "idle", c.b.opts.IdleTimeout)
			return io.EOF
		}
		return err
	}
}

// readError turns a read failure into nil (the client went away, the
// connection or broker is closing, it idled out) or an error to log.
func (c *conn) readError(what string, err error) error {
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || c.ctx.Err() != nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s: the client did not send its request within %s of starting it (slow or stalled client; raise %s for slow links)", what, c.b.opts.RequestTimeout, c.b.opts.flag("request-timeout"))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// reserve takes n bytes of the connection's and the broker's request
// budgets, waiting until responses give them back.
func (c *conn) reserve(n int64) error {
	if err := c.budget.Acquire(c.ctx, n); err != nil {
		return err
	}
	if n > frameChunkBytes {
		if err := c.b.largeRequestBytes.Acquire(c.ctx, n); err != nil {
			c.budget.Release(n)
			return err
		}
	}
	if err := c.b.requestBytes.Acquire(c.ctx, n); err != nil {
		if n > frameChunkBytes {
			c.b.largeRequestBytes.Release(n)
		}
		c.budget.Release(n)
		return err
	}
	c.inFlight.Add(n)
	c.b.metrics.requestBytes.Add(float64(n))
	return nil
}

func (c *conn) release(n int64) {
	c.inFlight.Add(-n)
	c.b.metrics.requestBytes.Sub(float64(n))
	c.b.requestBytes.Release(n)
	if n > frameChunkBytes {
		c.b.largeRequestBytes.Release(n)
	}
	c.budget.Release(n)
}

// readFrameBody reads a frame of size bytes into buf if it is large enough,
// else into a buffer that grows as the bytes arrive, so a client that
// announces a large frame and stalls does not get it allocated.
func readFrameBody(r io.Reader, size int, buf []byte) ([]byte, error) {
	if cap(buf) >= size {
		buf = buf[:size]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	buf = make([]byte, 0, min(size, frameChunkBytes))
	for len(buf) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), size-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < size {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// dispatch decodes one frame and runs the synchronous part of its handler.
func (c *conn) dispatch(frame []byte) (*request, reply, error) {
	r := &request{c: c, size: len(frame),
		key:     int16(binary.BigEndian.Uint16(frame[0:])),
		version: int16(binary.BigEndian.Uint16(frame[2:])),
		corr:    int32(binary.BigEndian.Uint32(frame[4:])),
	}
	if c.needsLogin() && !preAuthAPI(r.key) {
		// Kafka closes such a connection too; nothing of the request is
		// decoded or run.
		return nil, nil, fmt.Errorf("%s request before SASL authentication on a %s listener", kmsg.NameForKey(r.key), c.security)
	}
	a := apis[r.key]
	if a == nil {
		return nil, nil, fmt.Errorf("unsupported request kind %d (%s) v%d", r.key, kmsg.NameForKey(r.key), r.version)
	}
	if r.version < a.min || r.version > a.max {
		if a.key == kmsg.ApiVersions {
			// A client probing with a newer ApiVersions gets a v0 answer
			// listing what we speak, as Kafka does (KIP-511).
			resp := kmsg.NewPtrApiVersionsResponse()
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			resp.ApiKeys = supportedVersions()
			r.msg = kmsg.NewPtrApiVersionsRequest()
			r.version = 0
			return r, respond(resp), nil
		}
		return nil, nil, fmt.Errorf("unsupported %s version %d: this broker speaks v%d to v%d", a.key.Name(), r.version, a.min, a.max)
	}
	body := frame[8:]
	// Client id: a nullable non-compact string in every header version.
	if len(body) < 2 {
		return nil, nil, fmt.Errorf("truncated %s request header", a.key.Name())
	}
	if n := int16(binary.BigEndian.Uint16(body)); n > 0 {
		if int(n) > len(body)-2 {
			return nil, nil, fmt.Errorf("truncated %s request header", a.key.Name())
		}
		r.clientID = string(body[2 : 2+n])
		body = body[2+n:]
	} else {
		body = body[2:]
	}
	msg := a.key.Request()
	msg.SetVersion(r.version)
	if msg.IsFlexible() {
		var err error
		if body, err = skipTags(body); err != nil {
			return nil, nil, fmt.Errorf("%s request header: %w", a.key.Name(), err)
		}
	}
	if err := msg.ReadFrom(body); err != nil {
		return nil, nil, fmt.Errorf("malformed %s v%d request from client %q: %w", a.key.Name(), r.version, r.clientID, err)
	}
	r.msg = msg
	return r, a.handle(r), nil
}

// skipTags skips a tagged-field section (KIP-482) of a request header.
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("bad tag count")
	}
	b = b[k:]
	for range n {
		_, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return nil, errors.New("bad tag size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// writeLoop finishes replies in request order and writes them, flushing
// when no further reply is ready.
func (c *conn) writeLoop() {
	w := newResponseWriter(c.nc)
	failed := false
	// A client must take each response within RequestTimeout, as its own
	// request timeout expects: one that stops reading would otherwise hold
	// its requests' budget and this goroutine for ever (it is not idle
	// while responses are outstanding).
	deadline := func() { c.nc.SetWriteDeadline(time.Now().Add(c.b.opts.RequestTimeout)) }
	for q := range c.queue {
		if q.mayBlock && !failed {
			deadline()
			if err := w.flush(); err != nil {
				failed = true
				c.close()
			}
		}
		out := q.reply()
		if out == nil {
			c.b.metrics.request(q.req.key, 0, time.Since(q.read))
			c.release(q.bytes)
			continue
		}
		code := int16(0)
		if !out.raw {
			code = errorCode(out.resp)
		}
		c.b.metrics.request(q.req.key, code, time.Since(q.read))
		if failed {
			out.release()
			c.release(q.bytes)
			continue
		}
		deadline()
		n, err := w.write(q.req, out)
		out.release()
		c.release(q.bytes)
		c.b.metrics.bytesOut.Add(float64(n))
		if err == nil && len(c.queue) == 0 {
			err = w.flush()
		}
		if err != nil {
			switch {
			case c.ctx.Err() != nil || errors.Is(err, net.ErrClosed):
			case errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET):
				// The client left with requests outstanding: normal for
				// a consumer that stops while a fetch long-polls.
				c.log.Debug("client went away before its response", "err", err)
			case errors.Is(err, os.ErrDeadlineExceeded):
				if ok, dropped := c.b.connErrors.allow(time.Now()); ok {
					c.log.Warn("closing connection: the client did not take a response within the request timeout (raise "+c.b.opts.flag("request-timeout")+" for slow links)",
						"timeout", c.b.opts.RequestTimeout, "similar_since_last_log", dropped)
				}
			default:
				c.log.Warn("write response failed; closing connection", "err", err)
			}
			failed = true
			c.close()
		}
	}
	if !failed {
		deadline()
		w.flush()
	}
}

// mayBlock reports requests whose reply waits for something.
func mayBlock(msg kmsg.Request) bool {
	switch m := msg.(type) {
	case *kmsg.FetchRequest:
		return m.MaxWaitMillis > 0
	case *kmsg.ProduceRequest:
		return m.Acks == -1
	case *kmsg.InitProducerIDRequest:
		return m.TransactionalID != nil
	case *kmsg.AddPartitionsToTxnRequest, *kmsg.AddOffsetsToTxnRequest, *kmsg.TxnOffsetCommitRequest, *kmsg.EndTxnRequest:
		return true // an fsync of the transaction log, markers
	}
	return false
}

func (o *outgoing) release() {
	for _, s := range o.sections {
		s.Release()
	}
}

// section is a file range that goes into a response without passing
// through user space where the connection allows.
type section = storage.Section

// responseWriter frames responses onto a connection.
type responseWriter struct {
	nc  net.Conn
	bw  *bufio.Writer
	buf []byte
}

func newResponseWriter(nc net.Conn) *responseWriter {
	return &responseWriter{nc: nc, bw: bufio.NewWriterSize(nc, writeBufferBytes)}
}

func (w *responseWriter) flush() error { return w.bw.Flush() }

// write encodes out with kmsg and writes it, splicing file sections in
// place of the placeholders. It returns the bytes written.
func (w *responseWriter) write(r *request, out *outgoing) (int64, error) {
	if out.raw {
		b := binary.BigEndian.AppendUint32(w.buf[:0], uint32(len(out.token)))
		b = append(b, out.token...)
		w.buf = b
		_, err := w.bw.Write(b)
		return int64(len(b)), err
	}
	resp := out.resp
	resp.SetVersion(r.version)
	b := append(w.buf[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(r.corr))
	// ApiVersions responses keep header v0 even when flexible, so a client
	// that does not know our versions can still read them.
	if resp.IsFlexible() && r.key != int16(kmsg.ApiVersions) {
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	w.buf = b
	if len(out.sections) == 0 {
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		_, err := w.bw.Write(b)
		return int64(len(b)), err
	}

	flexible := resp.IsFlexible()
	// Find each placeholder and the length prefix before it.
	type cut struct{ at, prefix int }
	cuts := make([]cut, 0, len(out.sections))
	total := int64(len(b) - 4)
	from := 0
	for _, s := range out.sections {
		i := bytes.Index(b[from:], placeholder)
		if i < 0 {
			return 0, errors.New("internal error: fetch placeholder missing from encoded response")
		}
		at := from + i
		prefix := 4
		if flexible {
			prefix = 1 // uvarint(16+1)
		}
		cuts = append(cuts, cut{at, prefix})
		total += s.Len - int64(len(placeholder)) - int64(prefix) + int64(lenPrefixSize(s.Len, flexible))
		from = at + len(placeholder)
	}
	binary.BigEndian.PutUint32(b, uint32(total))
	from = 0
	var pfx [binary.MaxVarintLen64]byte
	for i, s := range out.sections {
		cu := cuts[i]
		if _, err := w.bw.Write(b[from : cu.at-cu.prefix]); err != nil {
			return 0, err
		}
		if _, err := w.bw.Write(appendLenPrefix(pfx[:0], s.Len, flexible)); err != nil {
			return 0, err
		}
		if err := w.writeSection(s); err != nil {
			return 0, err
		}
		from = cu.at + len(placeholder)
	}
	if _, err := w.bw.Write(b[from:]); err != nil {
		return 0, err
	}
	return total + 4, nil
}

func lenPrefixSize(n int64, flexible bool) int {
	if !flexible {
		return 4
	}
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutUvarint(tmp[:], uint64(n)+1)
}

func appendLenPrefix(dst []byte, n int64, flexible bool) []byte {
	if !flexible {
		return binary.BigEndian.AppendUint32(dst, uint32(n))
	}
	return binary.AppendUvarint(dst, uint64(n)+1)
}

// writeSection sends file bytes: with sendfile on a plain TCP connection,
// else through the buffer (TLS must encrypt in user space anyway).
func (w *responseWriter) writeSection(s section) error {
	if tc, ok := w.nc.(*net.TCPConn); ok && sendfileSupported {
		if err := w.bw.Flush(); err != nil {
			return err
		}
		return sendFile(tc, s.File, s.Pos, s.Len)
	}
	_, err := io.Copy(w.bw, io.NewSectionReader(s.File, s.Pos, s.Len))
	return err
}

// deadline bounds a long-poll by what the client asked, MaxFetchWait and
// the connection's life.
func deadline(maxWaitMillis int32) time.Duration {
	return min(time.Duration(max(maxWaitMillis, 0))*time.Millisecond, MaxFetchWait)
}
