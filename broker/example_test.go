package broker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker"
)

// The broker embedded in a program: open a data directory, listen on a
// loopback port, and talk to it with any Kafka client.
func Example() {
	dir, err := os.MkdirTemp("", "sluice-broker-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	b, err := broker.Open(dir, broker.Options{
		AutoCreateTopics: true,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	if _, err := b.Listen("127.0.0.1:0", nil); err != nil { // port 0: the kernel picks one
		panic(err)
	}

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()),
		kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics("greetings"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "greetings", Value: []byte("hello")}).FirstErr(); err != nil {
		panic(err)
	}
	r := cl.PollFetches(ctx).Records()[0]
	fmt.Printf("%s at offset %d\n", r.Value, r.Offset)
	// Output: hello at offset 0
}

// A transactional producer against the embedded broker: a read_committed
// consumer sees the committed transaction and never the aborted one.
func Example_transactions() {
	dir, err := os.MkdirTemp("", "sluice-broker-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	b, err := broker.Open(dir, broker.Options{
		AutoCreateTopics: true,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	if _, err := b.Listen("127.0.0.1:0", nil); err != nil {
		panic(err)
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.AllowAutoTopicCreation(),
		kgo.TransactionalID("example"), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		panic(err)
	}
	defer prod.Close()
	ctx := context.Background()
	for _, tx := range []struct {
		value  string
		commit kgo.TransactionEndTry
	}{{"kept", kgo.TryCommit}, {"dropped", kgo.TryAbort}, {"kept too", kgo.TryCommit}} {
		if err := prod.BeginTransaction(); err != nil {
			panic(err)
		}
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(tx.value)}).FirstErr(); err != nil {
			panic(err)
		}
		if err := prod.EndTransaction(ctx, tx.commit); err != nil {
			panic(err)
		}
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		panic(err)
	}
	defer cons.Close()
	for seen := 0; seen < 2; {
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			fmt.Printf("%s\n", r.Value)
			seen++
		})
	}
	// Output:
	// kept
	// kept too
}
