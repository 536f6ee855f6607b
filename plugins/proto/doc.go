// Package pluginpb is the transform plugin protocol: the gRPC service in
// transform.proto and the Go code generated from it (regenerate with
// `go generate ./plugins/...`). Plugin authors do not use it directly; they
// import plugins/sdk.
package pluginpb
