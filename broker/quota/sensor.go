package quota

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// The measuring window, as Kafka's defaults: a rate is the sum of the last
// WindowSamples samples of WindowSize each over the time they cover
// (quota.window.num 11, quota.window.size.seconds 1), so a client is held
// to its quota over about ten seconds and may burst within them.
const (
	WindowSamples = 11
	WindowSize    = time.Second
)

// MaxSensors bounds the sensors kept (one per measured user/client-id
// pair and quota key). Client ids are the client's choice, so without a
// bound a client cycling through ids would grow the map for ever; each
// sensor is about 300 bytes, so the bound holds them within a few MiB. Past
// it the least recently used sensor is dropped, which only forgets that
// client's recent usage.
const MaxSensors = 10000

// SensorIdleExpiry drops a sensor not recorded for this long, as Kafka
// expires its quota sensors after an hour of inactivity.
const SensorIdleExpiry = time.Hour

// sample is one WindowSize of usage.
type sample struct {
	start int64 // ms
	value float64
}

// sensor is Kafka's Rate over a SampledStat: samples in a ring, the
// current one advanced when its window is over.
type sensor struct {
	key     SensorKey
	samples [WindowSamples]sample
	n       int // samples in use
	cur     int
	last    int64 // ms of the last record, for expiry
}

func (s *sensor) record(v float64, now int64) {
	if s.n == 0 {
		s.samples[0] = sample{start: now}
		s.n, s.cur = 1, 0
	} else if now-s.samples[s.cur].start >= WindowSize.Milliseconds() {
		s.cur = (s.cur + 1) % WindowSamples
		if s.cur >= s.n {
			s.n++
		}
		s.samples[s.cur] = sample{start: now}
	}
	s.samples[s.cur].value += v
	s.last = now
}

// rate returns the rate per second and the window it was measured over
// (Kafka's Rate.measure and windowSize).
func (s *sensor) rate(now int64) (float64, int64) {
	if s.n == 0 {
		s.samples[0] = sample{start: now}
		s.n, s.cur = 1, 0
	}
	window := WindowSize.Milliseconds()
	// Samples older than the whole window no longer count.
	total := 0.0
	oldest := int64(math.MaxInt64)
	for i := range s.n {
		if now-s.samples[i].start >= WindowSamples*window {
			s.samples[i] = sample{start: now}
		}
		total += s.samples[i].value
		oldest = min(oldest, s.samples[i].start)
	}
	elapsed := now - oldest
	// Until the window has filled, divide by all but one of its samples'
	// time, so a first burst is not measured over a few milliseconds.
	if full := elapsed / window; full < WindowSamples-1 {
		elapsed += (WindowSamples - 1 - full) * window
	}
	return total / (float64(elapsed) / 1000), elapsed
}

// Sensors measures clients against their quotas.
type Sensors struct {
	mu  sync.Mutex
	m   map[SensorKey]*list.Element
	lru *list.List // of *sensor, most recently recorded at the front
	max int
}

// NewSensors returns an empty set of at most MaxSensors sensors.
func NewSensors() *Sensors {
	return &Sensors{m: map[SensorKey]*list.Element{}, lru: list.New(), max: MaxSensors}
}

// get returns key's sensor, creating it (and dropping the least recently
// used past the bound). s.mu is held.
func (s *Sensors) get(key SensorKey) *sensor {
	if el, ok := s.m[key]; ok {
		s.lru.MoveToFront(el)
		return el.Value.(*sensor)
	}
	for s.lru.Len() >= s.max {
		old := s.lru.Back()
		s.lru.Remove(old)
		delete(s.m, old.Value.(*sensor).key)
	}
	sn := &sensor{key: key}
	s.m[key] = s.lru.PushFront(sn)
	return sn
}

// Record adds v (bytes) to key's sensor at now and returns how long the
// client is throttled: zero within bound (bytes per second), else the time
// for its rate over the window to come back to bound (Kafka's
// QuotaUtils.throttleTime).
func (s *Sensors) Record(key SensorKey, bound, v float64, now time.Time) time.Duration {
	ms := now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.get(key)
	sn.record(v, ms)
	rate, window := sn.rate(ms)
	if rate <= bound {
		return 0
	}
	throttle := (rate - bound) / bound * float64(window)
	// A zero quota throttles as long as Kafka's int32 milliseconds allow.
	if math.IsInf(throttle, 0) || math.IsNaN(throttle) || throttle > math.MaxInt32 {
		throttle = math.MaxInt32
	}
	return time.Duration(math.Round(throttle)) * time.Millisecond
}

// RecordConnection counts a new connection on key's sensor and returns
// how long to hold it before closing it, zero to serve it: Kafka bounds a
// connection throttle by one window sample (its ConnectionQuotas), since
// the connection is held open, unserved, meanwhile.
func (s *Sensors) RecordConnection(key SensorKey, bound float64, now time.Time) time.Duration {
	return min(s.Record(key, bound, 1, now), WindowSize)
}

// RecordRequestTime adds took, the time a request kept the broker busy, to
// key's sensor as Kafka's request quota counts it (percent of one thread,
// per second), and returns the throttle: bounded by one sample, as Kafka
// bounds request throttles, since every request of the client counts.
func (s *Sensors) RecordRequestTime(key SensorKey, bound float64, took time.Duration, now time.Time) time.Duration {
	return min(s.Record(key, bound, took.Seconds()*100, now), WindowSize)
}

// Unrecord takes v back off key's sensor: a throttled fetch is answered
// empty, so what it would have sent does not count.
func (s *Sensors) Unrecord(key SensorKey, v float64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.m[key]; ok {
		el.Value.(*sensor).record(-v, now.UnixMilli())
	}
}

// Rate is key's measured rate in bytes per second, and whether it is
// measured at all.
func (s *Sensors) Rate(key SensorKey, now time.Time) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.m[key]
	if !ok {
		return 0, false
	}
	r, _ := el.Value.(*sensor).rate(now.UnixMilli())
	return r, true
}

// Recorded is the sum of key's samples as they stand (usage within the
// last window, not yet aged out), for tests and diagnostics.
func (s *Sensors) Recorded(key SensorKey) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.m[key]
	if !ok {
		return 0, false
	}
	sn := el.Value.(*sensor)
	total := 0.0
	for i := range sn.n {
		total += sn.samples[i].value
	}
	return total, true
}

// Expire drops sensors not recorded for SensorIdleExpiry.
func (s *Sensors) Expire(now time.Time) {
	cutoff := now.Add(-SensorIdleExpiry).UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.lru.Back(); el != nil; {
		sn := el.Value.(*sensor)
		if sn.last > cutoff {
			break
		}
		prev := el.Prev()
		s.lru.Remove(el)
		delete(s.m, sn.key)
		el = prev
	}
}

// Len is the number of sensors kept.
func (s *Sensors) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// MaxBytesInWindow is the most a client with quota bound may be sent in
// one response: what the quota allows over the window's full samples
// (Kafka's getMaxValueInQuotaWindow), so one fetch does not overshoot the
// quota by far.
func MaxBytesInWindow(bound float64) int64 {
	v := bound * (WindowSamples - 1) * WindowSize.Seconds()
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int64(v)
}
