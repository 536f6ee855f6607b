package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/engine"
)

// trimInterval spaces DeleteRecords requests: each one writes a
// checkpoint on every partition's leader, so trimming after every commit
// (many a second) would cost more than the space it frees sooner.
const trimInterval = 5 * time.Second

// trim deletes the records before until on the partitions this source
// reads (DirectConfig.Trim), at most every trimInterval. until is
// committed: the sink holds positions at or past it, so no reopening
// reads below it again. A failure is logged and retried at the next
// commit; nothing depends on it but the topic's size.
func (d *Direct) trim(ctx context.Context, until engine.Positions) {
	if d.adm == nil || time.Since(d.trimAt) < trimInterval {
		return
	}
	offsets := kadm.Offsets{}
	for tp, off := range until {
		if d.parts[tp] == nil || off <= d.trimmed[tp] {
			continue
		}
		offsets.AddOffset(tp.Topic, tp.Partition, off, -1)
	}
	if len(offsets) == 0 {
		return
	}
	d.trimAt = time.Now()
	resp, err := d.adm.DeleteRecords(ctx, offsets)
	if err == nil {
		err = resp.Error()
	}
	if d.trimmed == nil {
		d.trimmed = map[engine.TopicPartition]int64{}
	}
	resp.Each(func(r kadm.DeleteRecordsResponse) {
		if r.Err == nil {
			d.trimmed[engine.TopicPartition{Topic: r.Topic, Partition: r.Partition}] = r.LowWatermark
		}
	})
	if err != nil {
		d.log.Warn("could not delete committed records of an internal topic; retrying after the next commit", "err", err)
	}
}
