package pluginpb

// protoc comes from the OS packages (Debian: protobuf-compiler); the two Go
// generators are pinned as tools in go.mod, and `go tool -n` builds them and
// prints where they are.
//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative transform.proto"
