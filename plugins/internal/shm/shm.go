package shm

import (
	"errors"
	"fmt"
)

// ErrUnsupported means this system has no shared memory for plugins.
var ErrUnsupported = errors.New("shared memory for plugins is not supported on this system")

// Region is a mapped memory file cut into slots.
type Region struct {
	data      []byte
	slots     int
	slotBytes int
}

// Layout checks that a region of size bytes holds slots slots of
// slotBytes per area.
func layout(size, slots, slotBytes int) error {
	if slots <= 0 || slotBytes <= 0 || size < 2*slots*slotBytes {
		return fmt.Errorf("shared memory of %d bytes cannot hold %d slots of 2×%d bytes", size, slots, slotBytes)
	}
	return nil
}

// Slots returns the number of slots.
func (r *Region) Slots() int { return r.slots }

// SlotBytes returns the size of one request or response area.
func (r *Region) SlotBytes() int { return r.slotBytes }

// Request returns slot i's request area, empty with the area's capacity.
func (r *Region) Request(i int) []byte {
	off := 2 * i * r.slotBytes
	return r.data[off : off : off+r.slotBytes]
}

// Response returns slot i's response area, empty with the area's capacity.
func (r *Region) Response(i int) []byte {
	off := (2*i + 1) * r.slotBytes
	return r.data[off : off : off+r.slotBytes]
}

// Valid reports whether slot i holds n bytes.
func (r *Region) Valid(i int, n uint64) bool {
	return i >= 0 && i < r.slots && n <= uint64(r.slotBytes)
}
