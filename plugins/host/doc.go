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
// Plugin processes never outlive the host: each runs in its own process
// group with the parent-death signal SIGKILL (Linux; forked from a thread
// that lives as long as the host, see plugins/internal/proc), and the SDK
// also exits when its parent process changes. What a plugin starts dies
// with it: stopping a plugin kills its whole group, and the SDK's guard
// kills the group when the plugin dies any other way (see package sdk).
//
// A step with Config.State keeps keyed state for its plugin (sdk.State):
// the host answers the plugin's reads from the batch's state.View over a
// State service on go-plugin's broker and applies the writes the plugin
// returns with each answer, after checking them (see state.go and
// ARCHITECTURE §18).
//
// Config.Memory caps each plugin process with RLIMIT_DATA (private writable
// memory: heap and anonymous mappings, not the shared-memory batches),
// inherited by what it starts; a plugin that dies saying an allocation was
// refused fails with an error naming the step and the limit. A cgroup v2
// child group (memory.max, resident memory) would be the better mechanism
// but needs a delegated cgroup; it is not used yet.
package host
