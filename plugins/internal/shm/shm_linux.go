package shm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Create makes a memory file of slots slots and maps it. The caller passes
// the returned file to the plugin (exec.Cmd.ExtraFiles) and closes its own
// copy once the plugin started; Close unmaps the region.
func Create(slots, slotBytes int) (*Region, *os.File, error) {
	size := 2 * slots * slotBytes
	if err := layout(size, slots, slotBytes); err != nil {
		return nil, nil, err
	}
	fd, err := unix.MemfdCreate("sluice-plugin", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("shared memory: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sluice-plugin-shm")
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("shared memory: %w", err)
	}
	r, err := mapFile(f, size, slots, slotBytes)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return r, f, nil
}

// Open maps the memory file f (inherited from the host) with the layout
// the host announced.
func Open(f *os.File, slots, slotBytes int) (*Region, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shared memory: %w", err)
	}
	if err := layout(int(st.Size()), slots, slotBytes); err != nil {
		return nil, err
	}
	return mapFile(f, 2*slots*slotBytes, slots, slotBytes)
}

func mapFile(f *os.File, size, slots, slotBytes int) (*Region, error) {
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shared memory: map %d bytes: %w", size, err)
	}
	return &Region{data: data, slots: slots, slotBytes: slotBytes}, nil
}

// Close unmaps the region. Nothing may use its slices afterwards.
func (r *Region) Close() error {
	if r == nil || r.data == nil {
		return nil
	}
	err := unix.Munmap(r.data)
	r.data = nil
	return err
}
