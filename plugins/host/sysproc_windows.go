package host

import "os/exec"

// On Windows the SDK's parent watch is what ends a plugin whose host died.
var isolate = func(*exec.Cmd) {}

func killGroup(int) {}

func isolateGroupOnly(*exec.Cmd) {}

// limitMemory: memory: is enforced on Linux only; New refuses it elsewhere.
func limitMemory(int, int64) error { return errMemoryLinuxOnly }

const memoryLimitSupported = false
