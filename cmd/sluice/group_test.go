package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// group delete says what Kafka answered: a group that does not exist is
// not "a group with members", and a group with a member is refused.
func TestGroupDeleteSaysWhy(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	if out, err := runTool(t, addr, "", "topic", "create", "busy-topic", "--partitions", "1"); err != nil {
		t.Fatalf("topic create: %v %s", err, out)
	}
	_, err := runTool(t, addr, "", "group", "delete", "nosuch")
	if err == nil || !strings.Contains(err.Error(), "group nosuch does not exist; sluice group list shows the groups") ||
		strings.Contains(err.Error(), "members") {
		t.Fatalf("deleting a group that does not exist: %v", err)
	}

	member, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("busy"), kgo.ConsumeTopics("busy-topic"))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		// Polling joins the group; an empty topic returns nothing once
		// the short wait ends.
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		member.PollFetches(pctx)
		pcancel()
		if out, _ := runTool(t, addr, "", "group", "describe", "busy"); strings.Contains(out, "busy-topic:0") {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the member never got its partition")
		}
	}
	_, err = runTool(t, addr, "", "group", "delete", "busy")
	if err == nil || !strings.Contains(err.Error(), "group busy has members") {
		t.Fatalf("deleting a group with a member: %v", err)
	}
	member.Close() // leaves the group
	if out, err := runTool(t, addr, "", "group", "delete", "busy"); err != nil || !strings.Contains(out, "deleted group busy") {
		t.Fatalf("deleting the group once empty: %v %s", err, out)
	}
}

// consume --print-headers shows a dead letter's reason.
func TestConsumePrintsHeaders(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "dlq", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Key: []byte("k"), Value: []byte("oops"), Headers: []kgo.RecordHeader{
			{Key: "sluice.reason", Value: []byte("value is not JSON")}, {Key: "sluice.plugin", Value: []byte("extract#1")}}},
		&kgo.Record{Value: []byte("plain")},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, addr, "", "consume", "--topic", "dlq", "--from-beginning", "--max-messages", "2", "--print-headers", "--print-key")
	if err != nil {
		t.Fatal(err)
	}
	want := "sluice.reason:value is not JSON,sluice.plugin:extract#1\tk\toops\nNO_HEADERS\t\tplain\n"
	if out != want {
		t.Fatalf("consume --print-headers printed %q, want %q", out, want)
	}
}

// group describe shows a consumer-protocol (KIP-848) group: the protocol,
// the server-side assignor, and each member's epoch and assignment; a
// classic group says it is classic.
func TestGroupDescribeShowsProtocol(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	if out, err := runTool(t, addr, "", "topic", "create", "kip848", "--partitions", "3"); err != nil {
		t.Fatalf("topic create: %v %s", err, out)
	}
	member, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("next"), kgo.ConsumeTopics("kip848"),
		kgo.ServerSideBalancer(), kgo.Balancers(kgo.RangeBalancer()), kgo.ClientID("next-member"))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go member.PollFetches(ctx)
	var desc string
	for ctx.Err() == nil {
		desc, err = runTool(t, addr, "", "group", "describe", "next")
		if err == nil && strings.Contains(desc, "kip848:0,1,2") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"protocol consumer (KIP-848)", "assignor range", "state Stable", "EPOCH", "next-member", "kip848:0,1,2", "total lag"} {
		if !strings.Contains(desc, want) {
			t.Fatalf("group describe of a consumer-protocol group lacks %q: %v\n%s", want, err, desc)
		}
	}
	out, err := runTool(t, addr, "", "group", "list")
	if err != nil || !strings.Contains(out, "TYPE") {
		t.Fatalf("group list: %v %q", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "next" && (len(f) != 4 || f[3] != "consumer") {
			t.Fatalf("group list shows next as %q, want its type consumer", line)
		}
	}
}
