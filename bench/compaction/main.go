// Command compaction measures what log compaction does to a topic's size:
// it starts a real `sluice broker` process, creates a topic with a small
// segment.bytes and the given cleanup.policy, produces a steady stream of
// keyed updates over a fixed key space with franz-go, and prints the bytes
// on disk of the topic's directory every interval, with the broker's peak
// RSS (VmHWM) at the end. Run it once with compact and once with delete to
// compare (BENCHMARKS.md, "Compaction").
//
//	go build -o /tmp/sluice ./cmd/sluice
//	go run ./bench/compaction -sluice /tmp/sluice -policy compact -for 10m
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	bin := flag.String("sluice", "sluice", "the sluice binary")
	policy := flag.String("policy", "compact", "cleanup.policy of the topic")
	keys := flag.Int("keys", 10000, "distinct keys")
	rate := flag.Int("rate", 3000, "updates per second")
	valueBytes := flag.Int("value-bytes", 100, "bytes of each value")
	segment := flag.Int("segment-bytes", 1<<20, "segment.bytes of the topic")
	dur := flag.Duration("for", 10*time.Minute, "how long to produce")
	every := flag.Duration("every", 30*time.Second, "how often to measure")
	dir := flag.String("dir", "", "broker data directory (default: a new temporary one)")
	flag.Parse()
	if err := run(*bin, *policy, *keys, *rate, *valueBytes, *segment, *dur, *every, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "compaction:", err)
		os.Exit(1)
	}
}

func run(bin, policy string, keys, rate, valueBytes, segment int, dur, every time.Duration, dir string) error {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "compaction-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "broker", "--data", dir, "--listen", addr, "--tls-listen", "off")
	cmd.Stderr, cmd.Stdout = nil, nil
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const topic = "table"
	for {
		resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": &policy, "segment.bytes": kadm.StringPtr(fmt.Sprint(segment))}, topic)
		if err == nil && resp.Err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("create topic: %v %v", err, resp.Err)
		}
		time.Sleep(100 * time.Millisecond) // the broker is starting
	}
	topicDir := filepath.Join(dir, "topics", topic)
	fmt.Printf("policy=%s keys=%d rate=%d/s value=%dB segment.bytes=%d\n", policy, keys, rate, valueBytes, segment)
	fmt.Printf("%8s %12s %14s\n", "elapsed", "updates", "bytes_on_disk")
	// Random values, so the producer's compression does not hide the
	// bytes: a pool of them, picked in turn.
	values := make([][]byte, 1024)
	for i := range values {
		raw := make([]byte, (valueBytes+1)/2)
		rand.Read(raw)
		values[i] = []byte(hex.EncodeToString(raw)[:valueBytes])
	}
	start := time.Now()
	tick := time.NewTicker(time.Second / 100) // 100 rounds a second
	defer tick.Stop()
	perTick := max(rate/100, 1)
	next := start.Add(every)
	sent, k := 0, 0
	for time.Since(start) < dur {
		<-tick.C
		for range perTick {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%06d", k), Value: values[sent%len(values)]}, func(_ *kgo.Record, err error) {
				if err != nil && ctx.Err() == nil {
					fmt.Fprintln(os.Stderr, "produce:", err)
				}
			})
			k = (k + 1) % keys
			sent++
		}
		if time.Now().After(next) {
			next = next.Add(every)
			fmt.Printf("%8s %12d %14d\n", time.Since(start).Round(time.Second), sent, dirBytes(topicDir))
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	fmt.Printf("%8s %12d %14d\n", time.Since(start).Round(time.Second), sent, dirBytes(topicDir))
	fmt.Printf("broker peak RSS: %s\n", peakRSS(cmd.Process.Pid))
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// peakRSS reads VmHWM of a process (Linux).
func peakRSS(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}
