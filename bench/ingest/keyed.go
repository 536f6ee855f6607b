package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// keyedTopic is what the keyed and aggregate rows read: JSON values with
// an amount, keyed by one of cfg.keys keys.
const keyedTopic = "bench-keyed"

// aggregateStep is the aggregate row's step: issue 16's benchmark (count
// and sum per key over tumbling minutes). It emits every batch, since in
// event time a minute closes only when later records come, and the
// benchmark's input ends.
const aggregateStep = "[{aggregate: {key: key, window: {tumbling: 1m}, functions: {count: count, total: sum(amount)}, emit: every-batch}}]"

// amountOf is the amount of the i-th keyed record.
func amountOf(i int) int { return i % 1000 }

// fillKeyed writes cfg.records values of recordBytes bytes into
// keyedTopic: {"amount": N, "pad": "..."}, keyed k0..k(keys-1) in turn,
// partitioned by the producer's key hash (one key, one partition).
func (b *bench) fillKeyed() error {
	if err := createTopic(b.addr, keyedTopic, b.cfg.partitions); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.DefaultProduceTopic(keyedTopic),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchCompression(codecs[b.cfg.compression]),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(50*time.Millisecond),
		kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	log.Printf("writing %d keyed JSON records (%d keys) into %s", b.cfg.records, b.cfg.keys, keyedTopic)
	start := time.Now()
	ctx := context.Background()
	var (
		mu         sync.Mutex
		produceErr error
	)
	for i := range b.cfg.records {
		v := fmt.Appendf(make([]byte, 0, recordBytes), `{"amount":%d,"pad":"`, amountOf(i))
		for len(v) < recordBytes-2 {
			v = append(v, 'a'+byte(len(v)%26))
		}
		v = append(v, `"}`...)
		k := strconv.AppendInt([]byte{'k'}, int64(i%b.cfg.keys), 10)
		cl.Produce(ctx, &kgo.Record{Key: k, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				produceErr = cmp.Or(produceErr, err)
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if produceErr != nil {
		return fmt.Errorf("fill topic %s: %w", keyedTopic, produceErr)
	}
	log.Printf("filled %s in %.1fs", keyedTopic, time.Since(start).Seconds())
	return nil
}

// checkAggregate checks the aggregate row's output in dir: every update
// of a window holds its count and total so far, so the largest of each
// window, summed, must be the number of records and the sum of their
// amounts. A lost batch or one counted twice shows here.
func (b *bench) checkAggregate(dir string) error {
	parts, err := filepath.Glob(filepath.Join(dir, "part-*"))
	if err != nil {
		return err
	}
	type acc struct{ count, total int64 }
	last := map[string]acc{}
	lines := 0
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var v struct {
				Key   string `json:"key"`
				Start string `json:"window_start"`
				Count int64  `json:"count"`
				Total int64  `json:"total"`
			}
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				f.Close()
				return fmt.Errorf("output %s: %q is not the aggregate's JSON: %w", p, sc.Text(), err)
			}
			lines++
			id := v.Key + "|" + v.Start
			a := last[id]
			last[id] = acc{max(a.count, v.Count), max(a.total, v.Total)}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	var count, total, want int64
	for _, a := range last {
		count += a.count
		total += a.total
	}
	for i := range b.cfg.records {
		want += int64(amountOf(i))
	}
	if count != int64(b.cfg.records) || total != want {
		return fmt.Errorf("aggregate output (%d updates of %d windows) counts %d records with total %d; want %d and %d", lines, len(last), count, total, b.cfg.records, want)
	}
	log.Printf("aggregate output: %d updates of %d windows, counts and totals exact", lines, len(last))
	return nil
}
