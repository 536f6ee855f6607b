// Package shm is the shared memory a plugin host and a plugin process use
// for batch payloads: an anonymous memory file (Linux memfd) that the host
// creates and hands to the plugin as an inherited descriptor, so no other
// process can open it. It is cut into slots, one per call in flight, each
// a request area and a response area. gRPC still carries every call;
// the payload skips TLS, HTTP/2 framing and socket copies.
//
// On other systems Create and Open return ErrUnsupported and batches
// travel inside the gRPC messages.
package shm
