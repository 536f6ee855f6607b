// Package scaffold writes a new transform plugin project (main.go, a test,
// a README and go.mod) for `sluice plugin new`.
package scaffold
