package sinktest

import (
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// The suite passes against the in-memory reference sink, so a failure of
// another sink is that sink's.
func TestMemory(t *testing.T) {
	Run(t, func(t *testing.T) Harness {
		m := NewMemory()
		return Harness{
			New:             func(t *testing.T) engine.Sink { return m.NewSink() },
			Read:            func(t *testing.T) []string { return m.values(false) },
			ReadDeadLetters: func(t *testing.T) []string { return m.values(true) },
		}
	})
}

func TestMemoryTasks(t *testing.T) {
	RunTasks(t, func(t *testing.T) Harness {
		m := NewMemory()
		return Harness{
			New:  func(t *testing.T) engine.Sink { return m.NewSink() },
			Read: func(t *testing.T) []string { return m.values(false) },
		}
	})
}
