// Package host launches and supervises transform plugin processes and
// presents each pipeline step as an engine.Transform.
//
// A step runs Workers plugin processes (hashicorp/go-plugin, gRPC over a
// Unix socket with AutoMTLS; on Linux the records themselves go through a
// shared-memory file only the host and that process hold, see
// plugins/internal/shm). A batch's partitions are spread over them;
// records of one partition always go to the same worker, in order. When a
// plugin crashes or a call outlives the step's timeout, the process is
// killed and restarted with backoff, and Process returns an
// engine.Retryable error so the engine recomputes the batch (its output was
// never committed). After MaxConsecutiveFailures in a row the error is
// final and carries the plugin's last stderr lines.
//
// Plugin processes never outlive the host: they run in their own process
// group with a parent-death signal (Linux), and the SDK also exits when its
// parent process changes.
package host
