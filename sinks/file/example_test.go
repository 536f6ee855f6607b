package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/file"
)

// One epoch as the engine drives it: Open tells where to resume, Write
// stages, Commit stores output and positions together. With the default
// roll the committed output waits in the open part file, which Close (or
// 128 MiB, or a minute) makes visible, named by its last epoch.
func Example() {
	dir, _ := os.MkdirTemp("", "sluice-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	sink, err := file.New(file.Config{Path: dir, Format: "raw"}, nil, "")
	if err != nil {
		panic(err)
	}
	epoch, at, _ := sink.Open(ctx, "clicks")
	fmt.Println("resume after epoch", epoch, "at", at)

	sink.Write(ctx, epoch+1, []engine.Record{{Topic: "in", Offset: 0, Value: []byte("hello")}})
	sink.Commit(ctx, epoch+1, engine.Positions{{Topic: "in"}: 1})
	sink.Close()

	parts, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	for _, p := range parts {
		b, _ := os.ReadFile(p)
		fmt.Printf("%s: %q\n", filepath.Base(p), b)
	}
	again, _ := file.New(file.Config{Path: dir, Format: "raw"}, nil, "")
	epoch, at, _ = again.Open(ctx, "clicks")
	fmt.Println("resume after epoch", epoch, "at", at)
	again.Close()
	// Output:
	// resume after epoch 0 at {}
	// part-clicks-00000000000000000001.txt: "hello\n"
	// resume after epoch 1 at {in/0:1}
}
