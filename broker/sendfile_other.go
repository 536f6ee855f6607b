//go:build !linux

package broker

import (
	"errors"
	"net"
	"os"
)

const sendfileSupported = false

func sendFile(*net.TCPConn, *os.File, int64, int64) error {
	return errors.New("sendfile is not supported on this platform")
}
