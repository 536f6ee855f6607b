package broker

import (
	"io"
	"net"
	"os"
	"syscall"
)

const sendfileSupported = true

// sendFile copies n bytes of f from pos to tc in the kernel. It passes the
// offset explicitly, so concurrent appends to f (which move the file
// position) do not disturb it.
func sendFile(tc *net.TCPConn, f *os.File, pos, n int64) error {
	out, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	in, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	cerr := in.Control(func(infd uintptr) {
		err := out.Write(func(outfd uintptr) bool {
			for n > 0 {
				w, e := syscall.Sendfile(int(outfd), int(infd), &pos, int(min(n, 1<<30)))
				if w > 0 {
					n -= int64(w)
				}
				switch {
				case e == syscall.EAGAIN:
					return false // wait until the socket is writable
				case e == syscall.EINTR:
					continue
				case e != nil:
					werr = e
					return true
				case w == 0:
					werr = io.ErrUnexpectedEOF // the file is shorter than the section
					return true
				}
			}
			return true
		})
		if werr == nil {
			werr = err
		}
	})
	if cerr != nil {
		return cerr
	}
	return werr
}
