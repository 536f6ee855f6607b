//go:build !linux

package shm

import "os"

// Create is not supported here.
func Create(slots, slotBytes int) (*Region, *os.File, error) { return nil, nil, ErrUnsupported }

// Open is not supported here.
func Open(f *os.File, slots, slotBytes int) (*Region, error) { return nil, ErrUnsupported }

// Close does nothing: there is never a region.
func (r *Region) Close() error { return nil }
