// Command hostile is a test plugin that does what a plugin should not. With
// pidfile set it starts a child process (sleep) when configured and writes
// "PLUGIN_PID CHILD_PID" there; with alloc_mib set it allocates that many
// MiB per batch and keeps them. Records pass through unchanged.
package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/sluicehq/sluice/plugins/sdk"
)

type settings struct {
	PIDFile  string `json:"pidfile"`
	AllocMiB int    `json:"alloc_mib"`
}

var keep [][]byte

func main() {
	sdk.Serve(sdk.WithSettings(func(s settings) (sdk.Transform, error) {
		if s.PIDFile != "" {
			// A plain exec: nothing here asks the child to die with us.
			child := exec.Command("sleep", "1000")
			if err := child.Start(); err != nil {
				return nil, err
			}
			tmp := s.PIDFile + ".tmp"
			if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", os.Getpid(), child.Process.Pid), 0o644); err != nil {
				return nil, err
			}
			if err := os.Rename(tmp, s.PIDFile); err != nil {
				return nil, err
			}
		}
		return sdk.Map(func(r sdk.Record) (sdk.Record, error) {
			for range s.AllocMiB {
				b := make([]byte, 1<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				keep = append(keep, b)
			}
			s.AllocMiB = 0 // once per process: the first record
			return r, nil
		}), nil
	}))
}
