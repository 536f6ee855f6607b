package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A batch the broker refuses as corrupt (a byte flipped in its segment)
// used to leave consume waiting silently: franz-go retries
// CORRUPT_MESSAGE. consume now prints what came before, then exits 1 with
// one line naming the partition, the offset and how to read past it.
func TestConsumeReportsCorruptBatch(t *testing.T) {
	data := t.TempDir()
	addr, _ := startBroker(t, data)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("dmg"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "dmg", 1)
	const batches, perBatch = 5, 10
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for b := range batches {
		var recs []*kgo.Record
		for i := range perBatch {
			recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, "record-%04d", b*perBatch+i)})
		}
		// One ProduceSync, one batch on disk.
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	segs, err := filepath.Glob(filepath.Join(data, "topics", "dmg", "0", "*.log"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments of dmg-0: %v %v", segs, err)
	}
	// Flip a byte in the records of the third batch (offsets 20-29): its
	// CRC no longer matches.
	pos := batchPositions(t, segs[0])
	if len(pos) != batches {
		t.Fatalf("%d batches on disk, want %d", len(pos), batches)
	}
	flipByte(t, segs[0], pos[2]+80)

	for _, args := range [][]string{
		{"--from-beginning"},                   // the offset is where printing stopped
		{"--partition", "0", "--offset", "20"}, // the offset is where it began
	} {
		out, err := runTool(t, addr, "", append([]string{"consume", "--topic", "dmg"}, args...)...)
		te, ok := err.(*toolError)
		if !ok {
			t.Fatalf("consume %v: want an exit with an error, got %v; printed:\n%s", args, err, out)
		}
		msg := strings.TrimSpace(te.stderr)
		if strings.Count(msg, "\n") != 0 ||
			!strings.Contains(msg, "topic dmg partition 0: the broker refuses the record batch at offset 20 as corrupt (CORRUPT_MESSAGE)") ||
			!strings.Contains(msg, "sluice consume --topic dmg --partition 0 --offset 21") {
			t.Errorf("consume %v: stderr does not name the partition, offset and way on:\n%s", args, msg)
		}
		if args[0] == "--from-beginning" {
			if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 20 || lines[19] != "record-0019" {
				t.Errorf("consume %v printed %d lines before the corrupt batch, want the 20 before it:\n%s", args, len(lines), out)
			}
		}
	}
	// Past the batch, reading goes on.
	out, err := runTool(t, addr, "", "consume", "--topic", "dmg", "--partition", "0", "--offset", "30", "--max-messages", "20")
	if err != nil {
		t.Fatalf("consume past the corrupt batch: %v", err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 20 || lines[0] != "record-0030" {
		t.Fatalf("consume past the corrupt batch printed:\n%s", out)
	}
}

// batchPositions are the file positions of a segment's record batches.
func batchPositions(t *testing.T, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	// A batch is its base offset (8 bytes), its length (4), then that many
	// bytes; 61 bytes is the header of a batch.
	for pos := 0; pos+61 <= len(data); pos += 12 + int(binary.BigEndian.Uint32(data[pos+8:])) {
		out = append(out, int64(pos))
	}
	return out
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b[:], at); err != nil {
		t.Fatal(err)
	}
}
