package engine

import (
	"errors"
	"slices"
	"testing"
)

var tp0 = TopicPartition{"t", 0}

// drive runs the protocol through one happy batch after opening, recording
// every action it asks for.
func drive(t *testing.T, d Delivery) []Action {
	t.Helper()
	p := NewProtocol(d)
	var got []Action
	got = append(got, p.Next())
	p.Opened(0, nil, 0, nil)
	for range 10 {
		a := p.Next()
		got = append(got, a)
		switch a {
		case ActRead:
			if len(got) > 3 { // second read: stop
				return got
			}
			p.Read(5, Positions{tp0: 5})
		default:
			p.Done()
		}
	}
	t.Fatalf("protocol did not come back to read: %v", got)
	return nil
}

func TestProtocolOrderPerDelivery(t *testing.T) {
	tests := []struct {
		d    Delivery
		want []Action
	}{
		{ExactlyOnce, []Action{ActOpen, ActOpenSource, ActRead, ActProcess, ActWrite, ActCommit, ActAcknowledge, ActRead}},
		{AtLeastOnce, []Action{ActOpen, ActOpenSource, ActRead, ActProcess, ActWrite, ActCommit, ActSavePositions, ActAcknowledge, ActRead}},
		{AtMostOnce, []Action{ActOpen, ActOpenSource, ActRead, ActSavePositions, ActProcess, ActWrite, ActCommit, ActAcknowledge, ActRead}},
	}
	for _, tt := range tests {
		t.Run(string(tt.d), func(t *testing.T) {
			if got := drive(t, tt.d); !slices.Equal(got, tt.want) {
				t.Errorf("actions\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestProtocolEpochsAndPositions(t *testing.T) {
	p := NewProtocol(ExactlyOnce)
	p.Opened(7, Positions{tp0: 70}, 0, nil)
	p.Done() // open source
	p.Read(0, Positions{tp0: 70})
	if p.Next() != ActRead {
		t.Fatalf("an empty read must not start a batch, next is %s", p.Next())
	}
	p.Read(3, Positions{tp0: 73})
	b := p.Batch()
	if b.Epoch != 8 || b.From[tp0] != 70 || b.Until[tp0] != 73 {
		t.Fatalf("batch = epoch %d from %v until %v; want 8, 70, 73", b.Epoch, b.From, b.Until)
	}
	p.Done() // process
	p.Done() // write
	if e, at := p.Committed(); e != 7 || at[tp0] != 70 {
		t.Fatalf("committed moved before the sink committed: %d %v", e, at)
	}
	p.Done() // commit
	if e, at := p.Committed(); e != 8 || at[tp0] != 73 {
		t.Fatalf("committed = %d %v, want 8 {t/0:73}", e, at)
	}
}

func TestProtocolFailures(t *testing.T) {
	transient := Retryable(errors.New("connection refused"))
	fatal := errors.New("disk full")
	tests := []struct {
		name    string
		failAt  Action
		err     error
		want    []Action // actions after the failure
		attempt int
	}{
		{"read transient", ActRead, transient, []Action{ActBackoff, ActOpen}, 1},
		{"process transient", ActProcess, transient, []Action{ActBackoff, ActOpen}, 1},
		{"write transient aborts", ActWrite, transient, []Action{ActAbort, ActBackoff, ActOpen}, 1},
		{"commit transient aborts", ActCommit, transient, []Action{ActAbort, ActBackoff, ActOpen}, 1},
		{"commit fatal stops", ActCommit, fatal, []Action{ActAbort, ActStop}, 1},
		{"fenced stops", ActCommit, ErrFenced, []Action{ActAbort, ActStop}, 0},
		{"wrapped fenced stops", ActCommit, Retryable(ErrFenced), []Action{ActAbort, ActStop}, 0},
		{"ack failure is not a batch failure", ActAcknowledge, transient, []Action{ActRead}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewProtocol(ExactlyOnce)
			p.Opened(0, nil, 0, nil)
			for p.Next() != tt.failAt {
				switch p.Next() {
				case ActRead:
					p.Read(1, Positions{tp0: 1})
				default:
					p.Done()
				}
			}
			p.Failed(tt.err)
			var got []Action
			for range len(tt.want) {
				a := p.Next()
				got = append(got, a)
				if a == ActStop || a == ActOpen || a == ActRead {
					break
				}
				p.Done()
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("after failing %s: got %v want %v", tt.failAt, got, tt.want)
			}
			if p.Attempt() != tt.attempt {
				t.Errorf("attempt = %d, want %d", p.Attempt(), tt.attempt)
			}
			if tt.want[len(tt.want)-1] == ActStop && !errors.Is(p.Err(), tt.err) {
				t.Errorf("Err() = %v, want it to wrap %v", p.Err(), tt.err)
			}
		})
	}
}

func TestProtocolResume(t *testing.T) {
	at5 := Positions{tp0: 5}
	at9 := Positions{tp0: 9}
	tests := []struct {
		name         string
		d            Delivery
		sinkE, cpE   uint64
		sinkAt, cpAt Positions
		want         Action
		wantE        uint64
		wantAt       Positions
	}{
		{"exactly-once trusts the sink", ExactlyOnce, 3, 4, at5, at9, ActOpenSource, 3, at5},
		{"at-least-once sink ahead", AtLeastOnce, 4, 3, at9, at5, ActOpenSource, 4, at9},
		{"at-least-once checkpoint of stateless sink", AtLeastOnce, 0, 4, nil, at9, ActFillGap, 4, at9},
		{"at-most-once checkpoint ahead", AtMostOnce, 3, 4, at5, at9, ActFillGap, 4, at9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewProtocol(tt.d)
			p.Opened(tt.sinkE, tt.sinkAt, tt.cpE, tt.cpAt)
			if p.Next() != tt.want {
				t.Fatalf("next = %s, want %s", p.Next(), tt.want)
			}
			if p.Next() == ActFillGap {
				if b := p.Batch(); b.Epoch != tt.wantE || !b.Until.Equal(tt.wantAt) {
					t.Fatalf("gap batch %d %v", b.Epoch, b.Until)
				}
				p.Done()
			}
			if e, at := p.Committed(); e != tt.wantE || !at.Equal(tt.wantAt) {
				t.Fatalf("resumes at %d %v, want %d %v", e, at, tt.wantE, tt.wantAt)
			}
		})
	}
}

func TestProtocolBackoffGrows(t *testing.T) {
	p := NewProtocol(ExactlyOnce)
	var last Action
	var prev = p.Backoff()
	for i := range 12 {
		p.Opened(0, nil, 0, nil)
		p.Failed(Retryable(errors.New("down"))) // open source fails
		last = p.Next()
		if last != ActBackoff {
			t.Fatalf("attempt %d: next %s", i, last)
		}
		d := p.Backoff()
		if d < prev || d > maxBackoff {
			t.Fatalf("attempt %d: backoff %v after %v", i, d, prev)
		}
		prev = d
		p.Done()
	}
	if prev != maxBackoff {
		t.Fatalf("backoff after 12 failures = %v, want the cap %v", prev, maxBackoff)
	}
}
