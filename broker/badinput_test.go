package broker

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// frame prefixes body with its length.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// header builds a request header v1 (no tags).
func header(key, version int16, corr int32) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	return binary.BigEndian.AppendUint16(b, 0xffff) // null client id
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	_, addr := testBroker(t, Options{})
	good := newKgo(t, addr)
	cases := []struct {
		name string
		send []byte
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xfe, 1, 2, 3}},
		{"oversized length", binary.BigEndian.AppendUint32(nil, MaxFrameBytes+1)},
		{"frame shorter than a header", frame([]byte{0, 3, 0})},
		{"unknown api key", frame(header(9999, 0, 1))},
		{"api not served yet", frame(header(int16(kmsg.JoinGroup), 0, 1))},
		{"produce version too old", frame(header(int16(kmsg.Produce), 2, 1))},
		{"produce version too new", frame(header(int16(kmsg.Produce), 13, 1))},
		{"truncated metadata body", frame(append(header(int16(kmsg.Metadata), 1, 1), 0, 0, 0, 5))},
		{"client id longer than frame", frame([]byte{0, 3, 0, 1, 0, 0, 0, 1, 0x7f, 0xff})},
		{"array count past the frame", frame(append(header(int16(kmsg.Metadata), 1, 1), 0x7f, 0xff, 0xff, 0xff))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(c.send); err != nil {
				t.Fatal(err)
			}
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.Copy(io.Discard, nc)
			if err != nil {
				t.Fatalf("broker did not close the connection: %v", err)
			}
			if n != 0 {
				t.Fatalf("broker answered %d bytes instead of closing", n)
			}
			if _, err := topicMetadataReq(t, good); err != nil {
				t.Fatalf("broker stopped serving others: %v", err)
			}
		})
	}
}

func TestTLSClientHelloOnPlainPort(t *testing.T) {
	_, addr := testBroker(t, Options{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("TLS handshake with the plain port succeeded")
	} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("broker left a TLS client hanging: %v", err)
	}
	if _, err := topicMetadataReq(t, newKgo(t, addr)); err != nil {
		t.Fatalf("broker stopped serving: %v", err)
	}
}

func TestApiVersionsTooNewGetsV0Answer(t *testing.T) {
	_, addr := testBroker(t, Options{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(frame(header(int16(kmsg.ApiVersions), 99, 42))); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatal(err)
	}
	if corr := int32(binary.BigEndian.Uint32(body)); corr != 42 {
		t.Fatalf("correlation id %d", corr)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != len(apiTable) {
		t.Fatalf("got error %d with %d keys", resp.ErrorCode, len(resp.ApiKeys))
	}
}

// acks=0 produce gets no response: the next response on the connection
// answers the request after it.
func TestAcksZeroGetsNoResponse(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "fire", 1)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f := kmsg.NewRequestFormatter()
	prod := kmsg.NewPtrProduceRequest()
	prod.Version, prod.Acks, prod.TimeoutMillis = 7, 0, 1000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "fire"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = testBatch("and", "forget")
	rt.Partitions = append(rt.Partitions, rp)
	prod.Topics = append(prod.Topics, rt)
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 1
	out := append(f.AppendRequest(nil, prod, 1), f.AppendRequest(nil, md, 2)...)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [8]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		t.Fatal(err)
	}
	if corr := binary.BigEndian.Uint32(hdr[4:]); corr != 2 {
		t.Fatalf("first response answers request %d, want the metadata request (2)", corr)
	}
	if end := b.topics.partition("fire", 0).EndOffset(); end != 2 {
		t.Fatalf("acks=0 records not stored: end offset %d", end)
	}
}

func TestCorruptBatchIsRejected(t *testing.T) {
	b, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	createTopic(t, cl, "strict", 1)
	good := testBatch("fine")
	bad := testBatch("flipped")
	bad[len(bad)-2] ^= 0x01
	cases := []struct {
		name    string
		records []byte
		code    int16
		end     int64
	}{
		{"bad crc", bad, kerr.CorruptMessage.Code, 0},
		{"good then bad in one request", append(append([]byte(nil), good...), bad...), kerr.CorruptMessage.Code, 0},
		{"truncated", good[:len(good)-3], kerr.CorruptMessage.Code, 0},
		{"good", good, 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := kmsg.NewPtrProduceRequest()
			req.Acks, req.TimeoutMillis = -1, 5000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = "strict"
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Records = c.records
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctxT(t), cl)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Topics[0].Partitions[0].ErrorCode; got != c.code {
				t.Fatalf("error code %d, want %d", got, c.code)
			}
			if end := b.topics.partition("strict", 0).EndOffset(); end != c.end {
				t.Fatalf("end offset %d, want %d", end, c.end)
			}
		})
	}
}

// rebatch rebuilds batch b around records recs with compression attribute
// codec and a fresh CRC: the batch passes every check of its header and
// only what is inside is wrong.
func rebatch(b []byte, codec int16, recs []byte) []byte {
	out := append(append([]byte(nil), b[:61]...), recs...)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint16(out[21:], uint16(codec))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// TestMalformedRecordsAreRefused is issue 13's probe: batches whose CRC is
// right but whose records do not decode are refused for their partition
// with nothing stored, and a read_committed consumer reads the good batches
// on either side.
func TestMalformedRecordsAreRefused(t *testing.T) {
	b, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	createTopic(t, cl, "hostile", 1)
	good := testBatch("x", "y", "z")
	recs := good[61:]
	first := 1 + int(recs[0]>>1) // the first record's length varint and body
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(recs)
	w.Close()
	badGzip := append([]byte(nil), gz.Bytes()...)
	badGzip[len(badGzip)/2] ^= 0xff
	count := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(count[57:], 2) // 2 records, last offset delta 2
	count = rebatch(count, 0, recs)
	cases := []struct {
		name  string
		batch []byte
		code  int16
	}{
		{"varint that never ends", rebatch(good, 0, append(append([]byte(nil), recs[:first]...), bytes.Repeat([]byte{0xff}, 11)...)), kerr.CorruptMessage.Code},
		{"truncated record", rebatch(good, 0, recs[:len(recs)-1]), kerr.CorruptMessage.Code},
		{"bad gzip payload", rebatch(good, 1, badGzip), kerr.CorruptMessage.Code},
		{"fewer records than counted", rebatch(good, 0, recs[:first]), kerr.CorruptMessage.Code},
		{"count disagrees with offsets", count, kerr.InvalidRecord.Code},
	}
	if rp := produceRaw(t, cl, "hostile", testBatch("before")); rp.ErrorCode != 0 {
		t.Fatalf("good batch: error %d", rp.ErrorCode)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rp := produceRaw(t, cl, "hostile", c.batch)
			if rp.ErrorCode != c.code {
				t.Fatalf("error code %d, want %d", rp.ErrorCode, c.code)
			}
			if rp.ErrorMessage == nil || *rp.ErrorMessage == "" {
				t.Fatal("no error message")
			}
			if end := b.topics.partition("hostile", 0).EndOffset(); end != 1 {
				t.Fatalf("end offset %d: something of the batch was stored", end)
			}
		})
	}
	var gzGood bytes.Buffer
	w = gzip.NewWriter(&gzGood)
	w.Write(recs)
	w.Close()
	if rp := produceRaw(t, cl, "hostile", rebatch(good, 1, gzGood.Bytes())); rp.ErrorCode != 0 {
		t.Fatalf("good gzip batch: error %d", rp.ErrorCode)
	}
	cons := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"hostile": {0: kgo.NewOffset().At(0)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	var got []string
	for len(got) < 4 {
		fs := cons.PollFetches(ctxT(t))
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, fmt.Sprintf("%d:%s", r.Offset, r.Value)) })
	}
	if want := "0:before 1:x 2:y 3:z"; strings.Join(got, " ") != want {
		t.Fatalf("consumed %q, want %q", got, want)
	}
}
