//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal is false off Linux: the password is read as piped input.
func isTerminal(*os.File) bool { return false }

func readNoEcho(*os.File, func()) (string, error) {
	return "", errors.New("reading a password from a terminal is supported on Linux only; give --password-file")
}
