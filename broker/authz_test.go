package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// Until a client authenticates its principal is User:ANONYMOUS, so these
// tests tell clients apart by the loopback address they connect from, as
// an ACL's host does: the admin from 127.0.0.1, "alice" from 127.0.0.2,
// "mallory" from 127.0.0.3.
const (
	adminHost   = "127.0.0.1"
	aliceHost   = "127.0.0.2"
	malloryHost = "127.0.0.3"
	anon        = anonymousPrincipal
)

// fromHost makes a client connect from a given loopback address.
func fromHost(ip string) kgo.Opt {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		return d.DialContext(ctx, network, host)
	})
}

// aclBroker starts a broker with the authorizer on, where the admin host
// may do anything (an ALL ACL on every resource type), plus the bindings
// given.
func aclBroker(t *testing.T, dir string, opts Options, bindings ...acl.Binding) (*Broker, string) {
	t.Helper()
	opts.ACL = true
	b, addr := testBrokerDir(t, dir, opts)
	for _, rt := range []acl.ResourceType{resTopic, resGroup, resCluster, resTxnID} {
		bindings = append(bindings, allowB(rt, acl.Wildcard, anon, adminHost, kmsg.ACLOperationAll))
	}
	for i, err := range b.authz.Create(bindings) {
		if err != nil {
			t.Fatalf("binding %v: %v", bindings[i], err)
		}
	}
	return b, addr
}

func allowB(rt acl.ResourceType, name, principal, host string, op acl.Operation) acl.Binding {
	return acl.Binding{ResourceType: rt, ResourceName: name, PatternType: kmsg.ACLResourcePatternTypeLiteral,
		Principal: principal, Host: host, Operation: op, Permission: kmsg.ACLPermissionTypeAllow}
}

func prefixed(b acl.Binding) acl.Binding {
	b.PatternType = kmsg.ACLResourcePatternTypePrefixed
	return b
}

func denied(b acl.Binding) acl.Binding {
	b.Permission = kmsg.ACLPermissionTypeDeny
	return b
}

// direct sends requests to the broker itself: franz-go splits some
// requests (ListOffsets, OffsetFetch, DescribeConfigs, ...) and turns their
// error codes into errors, where these tests check the codes.
func direct(t *testing.T, cl *kgo.Client) kmsg.Requestor {
	t.Helper()
	// franz-go learns the brokers from a metadata request it is given.
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctxT(t), cl); err != nil {
		t.Fatal(err)
	}
	return cl.Broker(0)
}

func produceTo(ctx context.Context, cl *kgo.Client, topic string, values ...string) error {
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(v)})
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// Produce and consume, allowed and denied, by franz-go clients: a denied
// client gets TOPIC_AUTHORIZATION_FAILED and the broker keeps serving the
// allowed one; a DENY wins over an ALLOW; a PREFIXED ACL covers the topics
// it names the start of.
func TestACLProduceConsume(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), Options{},
		allowB(resTopic, "orders", anon, aliceHost, opWrite),
		allowB(resTopic, "orders", anon, aliceHost, opRead),
		prefixed(allowB(resTopic, "logs-", anon, aliceHost, kmsg.ACLOperationAll)),
		denied(allowB(resTopic, "logs-secret", anon, aliceHost, opWrite)),
	)
	ctx := ctxT(t)
	admin := newKgo(t, addr, fromHost(adminHost))
	for _, name := range []string{"orders", "logs-app", "logs-secret"} {
		createTopic(t, admin, name, 1)
	}
	alice := newKgo(t, addr, fromHost(aliceHost))
	mallory := newKgo(t, addr, fromHost(malloryHost), kgo.RecordRetries(2))

	if err := produceTo(ctx, mallory, "orders", "evil"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("mallory's produce: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if err := produceTo(ctx, alice, "orders", "a", "b"); err != nil {
		t.Fatalf("alice's produce after mallory was refused: %v", err)
	}
	if err := produceTo(ctx, alice, "logs-app", "x"); err != nil {
		t.Fatalf("alice's produce to a prefixed topic: %v", err)
	}
	if err := produceTo(ctx, alice, "logs-secret", "x"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice's produce under a DENY: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}

	// Fetch: mallory's partition answers the error.
	fetch := func(cl *kgo.Client) (int16, []byte) {
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes, req.MaxWaitMillis = 1<<20, 0
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "orders"
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes = 1 << 20
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		return p.ErrorCode, p.RecordBatches
	}
	if code, data := fetch(mallory); code != kerr.TopicAuthorizationFailed.Code || len(data) != 0 {
		t.Fatalf("mallory's fetch: code %d, %d bytes", code, len(data))
	}
	if code, data := fetch(alice); code != 0 || len(data) == 0 {
		t.Fatalf("alice's fetch: code %d, %d bytes", code, len(data))
	}
	// ListOffsets needs DESCRIBE, which READ and WRITE imply.
	for _, c := range []struct {
		cl   *kgo.Client
		want int16
	}{{alice, 0}, {mallory, kerr.TopicAuthorizationFailed.Code}} {
		req := kmsg.NewPtrListOffsetsRequest()
		lt := kmsg.NewListOffsetsRequestTopic()
		lt.Topic = "orders"
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Timestamp = -1
		lt.Partitions = append(lt.Partitions, lp)
		req.Topics = append(req.Topics, lt)
		resp, err := req.RequestWith(ctx, direct(t, c.cl))
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != c.want {
			t.Fatalf("ListOffsets: %v %+v, want code %d", err, resp, c.want)
		}
	}
	// A consuming client sees the records.
	cons := newKgo(t, addr, fromHost(aliceHost), kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 2 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("consumed %q", got)
	}
}

// Metadata lists only the topics a client may describe; one it names but
// may not describe answers TOPIC_AUTHORIZATION_FAILED; auto-creation needs
// CREATE.
func TestACLMetadata(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), Options{AutoCreateTopics: true},
		allowB(resTopic, "a", anon, aliceHost, opDescribe),
		prefixed(allowB(resTopic, "b-", anon, aliceHost, opRead)),
		prefixed(allowB(resTopic, "auto-", anon, aliceHost, opCreate)),
		prefixed(allowB(resTopic, "auto-", anon, aliceHost, opWrite)),
		allowB(resTopic, "nocreate", anon, aliceHost, opWrite),
	)
	admin := newKgo(t, addr, fromHost(adminHost))
	for _, name := range []string{"a", "b-1", "c"} {
		createTopic(t, admin, name, 1)
	}
	alice := newKgo(t, addr, fromHost(aliceHost))
	md := func(topics ...string) map[string]int16 {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		if topics != nil {
			req.AllowAutoTopicCreation = true
			for _, n := range topics {
				rt := kmsg.NewMetadataRequestTopic()
				rt.Topic = kmsg.StringPtr(n)
				req.Topics = append(req.Topics, rt)
			}
		}
		resp, err := req.RequestWith(ctxT(t), alice)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int16{}
		for _, mt := range resp.Topics {
			out[*mt.Topic] = mt.ErrorCode
		}
		return out
	}
	if got := md(); len(got) != 2 || got["a"] != 0 || got["b-1"] != 0 {
		t.Fatalf("all topics as alice: %v, want a and b-1", got)
	}
	got := md("a", "c", "auto-1", "nocreate")
	taf := kerr.TopicAuthorizationFailed.Code
	if got["a"] != 0 || got["c"] != taf || got["auto-1"] != 0 || got["nocreate"] != taf {
		t.Fatalf("named topics as alice: %v", got)
	}
	adm := kadm.NewClient(admin)
	topics, err := adm.ListTopics(ctxT(t))
	if err != nil || !topics.Has("auto-1") || topics.Has("nocreate") {
		t.Fatalf("after alice's metadata the topics are %v (%v); want auto-1 created, nocreate not", topics.Names(), err)
	}
	// kadm's admin sees everything.
	if !topics.Has("c") || !topics.Has("a") {
		t.Fatalf("the admin lists %v", topics.Names())
	}
}

// Creating and deleting topics needs CREATE (cluster or topic) and DELETE.
func TestACLCreateDeleteTopics(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), Options{},
		prefixed(allowB(resTopic, "alice-", anon, aliceHost, opCreate)),
		allowB(resTopic, "alice-1", anon, aliceHost, opDelete),
	)
	ctx := ctxT(t)
	aliceCl := newKgo(t, addr, fromHost(aliceHost))
	alice := kadm.NewClient(aliceCl)
	res, err := alice.CreateTopics(ctx, 1, 1, nil, "alice-1", "alice-2", "bob-1")
	if err != nil {
		t.Fatal(err)
	}
	if res["alice-1"].Err != nil || res["alice-2"].Err != nil || !errors.Is(res["bob-1"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("create: alice-1 %v, alice-2 %v, bob-1 %v", res["alice-1"].Err, res["alice-2"].Err, res["bob-1"].Err)
	}
	del, err := alice.DeleteTopics(ctx, "alice-1", "alice-2", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if del["alice-1"].Err != nil || !errors.Is(del["alice-2"].Err, kerr.TopicAuthorizationFailed) ||
		!errors.Is(del["missing"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("delete: alice-1 %v, alice-2 %v, missing %v", del["alice-1"].Err, del["alice-2"].Err, del["missing"].Err)
	}
	// DescribeConfigs needs DESCRIBE_CONFIGS; the broker's, on the cluster.
	dc := kmsg.NewPtrDescribeConfigsRequest()
	for _, typ := range []kmsg.ConfigResourceType{kmsg.ConfigResourceTypeTopic, kmsg.ConfigResourceTypeBroker} {
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName = typ, "alice-2"
		if typ == kmsg.ConfigResourceTypeBroker {
			r.ResourceName = "0"
		}
		dc.Resources = append(dc.Resources, r)
	}
	resp, err := dc.RequestWith(ctx, direct(t, aliceCl))
	if err != nil || resp.Resources[0].ErrorCode != kerr.TopicAuthorizationFailed.Code ||
		resp.Resources[1].ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("describe configs: %v %+v", err, resp)
	}
}

// Consumer groups: a member of an allowed group consumes and commits; a
// denied group answers GROUP_AUTHORIZATION_FAILED to every group request,
// and ListGroups shows only the groups the client may describe.
func TestACLGroups(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), Options{},
		allowB(resTopic, "in", anon, aliceHost, opRead),
		allowB(resGroup, "g", anon, aliceHost, opRead),
		allowB(resGroup, "g", anon, malloryHost, opDescribe), // may see it, not join it
		allowB(resTopic, "in", anon, malloryHost, opRead),
	)
	ctx := ctxT(t)
	admin := newKgo(t, addr, fromHost(adminHost))
	createTopic(t, admin, "in", 2)
	if err := produceTo(ctx, admin, "in", "1", "2", "3"); err != nil {
		t.Fatal(err)
	}
	cons := newKgo(t, addr, fromHost(aliceHost), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	n := 0
	for n < 3 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("alice commits in her group: %v", err)
	}
	adm := kadm.NewClient(admin)
	offs, err := adm.FetchOffsets(ctx, "g")
	o0, _ := offs.Lookup("in", 0)
	o1, _ := offs.Lookup("in", 1)
	if err != nil || o0.At+o1.At != 3 {
		t.Fatalf("committed offsets of g: %v %v", offs, err)
	}

	mallory := newKgo(t, addr, fromHost(malloryHost))
	gaf := kerr.GroupAuthorizationFailed.Code
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = "g", "consumer", 10000, 10000
	join.Protocols = append(join.Protocols, kmsg.JoinGroupRequestProtocol{Name: "range"})
	if resp, err := join.RequestWith(ctx, mallory); err != nil || resp.ErrorCode != gaf {
		t.Fatalf("mallory joins g: %v %+v", err, resp)
	}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.Generation = "g", -1
	ct := kmsg.NewOffsetCommitRequestTopic()
	ct.Topic = "in"
	ct.Partitions = append(ct.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: 0, Offset: 0})
	commit.Topics = append(commit.Topics, ct)
	if resp, err := commit.RequestWith(ctx, mallory); err != nil || resp.Topics[0].Partitions[0].ErrorCode != gaf {
		t.Fatalf("mallory commits to g: %v %+v", err, resp)
	}
	// Mallory may describe g, so fetching its offsets is allowed.
	// OffsetFetch v8+ (what kgo negotiates) batches groups.
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g"}}
	if resp, err := fetch.RequestWith(ctx, direct(t, mallory)); err != nil || resp.Groups[0].ErrorCode != 0 || len(resp.Groups[0].Topics) != 1 {
		t.Fatalf("mallory fetches g's offsets: %v %+v", err, resp)
	}
	fetch.Groups[0].Group = "other"
	if resp, err := fetch.RequestWith(ctx, direct(t, mallory)); err != nil || resp.Groups[0].ErrorCode != gaf {
		t.Fatalf("mallory fetches other's offsets: %v %+v", err, resp)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"g"}
	if resp, err := del.RequestWith(ctx, mallory); err != nil || resp.Groups[0].ErrorCode != gaf {
		t.Fatalf("mallory deletes g: %v %+v", err, resp)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "other"
	if resp, err := fc.RequestWith(ctx, mallory); err != nil || resp.ErrorCode != gaf {
		t.Fatalf("mallory finds other's coordinator: %v %+v", err, resp)
	}
	desc := kmsg.NewPtrDescribeGroupsRequest()
	desc.Groups = []string{"g", "other"}
	if resp, err := desc.RequestWith(ctx, direct(t, mallory)); err != nil || resp.Groups[0].ErrorCode != 0 || resp.Groups[1].ErrorCode != gaf {
		t.Fatalf("mallory describes groups: %v %+v", err, resp)
	}
	// alice's group g (and nothing else) is what alice and mallory list.
	for _, cl := range []*kgo.Client{newKgo(t, addr, fromHost(aliceHost)), mallory} {
		lg, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, cl)
		if err != nil || len(lg.Groups) != 1 || lg.Groups[0].Group != "g" {
			t.Fatalf("list groups: %v %+v", err, lg)
		}
	}
	nobody := newKgo(t, addr, fromHost("127.0.0.4"))
	if lg, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, nobody); err != nil || len(lg.Groups) != 0 {
		t.Fatalf("a client without ACLs lists groups: %v %+v", err, lg)
	}
}

// Transactions: an allowed transactional id produces and commits, a denied
// one gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED; an idempotent producer
// needs WRITE on some topic.
func TestACLTransactions(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), Options{},
		allowB(resTopic, "out", anon, aliceHost, opWrite),
		allowB(resTxnID, "tx-ok", anon, aliceHost, opWrite),
		allowB(resTopic, "out", anon, malloryHost, opRead),
	)
	ctx := ctxT(t)
	createTopic(t, newKgo(t, addr, fromHost(adminHost)), "out", 1)
	ok := newKgo(t, addr, fromHost(aliceHost), kgo.TransactionalID("tx-ok"), kgo.DefaultProduceTopic("out"))
	if err := ok.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := ok.ProduceSync(ctx, kgo.StringRecord("v")).FirstErr(); err != nil {
		t.Fatalf("produce in an allowed transaction: %v", err)
	}
	if err := ok.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	bad := newKgo(t, addr, fromHost(aliceHost), kgo.TransactionalID("tx-no"), kgo.DefaultProduceTopic("out"))
	// franz-go initialises the producer id at once: the refusal comes from
	// BeginTransaction or the first produce.
	err := bad.BeginTransaction()
	if err == nil {
		err = bad.ProduceSync(ctx, kgo.StringRecord("v")).FirstErr()
	}
	if !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.Fatalf("transaction with a denied transactional id: %v", err)
	}
	// Raw requests, for the codes of each transactional call.
	raw := direct(t, newKgo(t, addr, fromHost(aliceHost)))
	tiaf := kerr.TransactionalIDAuthorizationFailed.Code
	if resp := initProducerID(t, raw, kmsg.StringPtr("tx-no")); resp.ErrorCode != tiaf {
		t.Fatalf("InitProducerId for tx-no: code %d", resp.ErrorCode)
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID = "tx-no"
	if resp, err := end.RequestWith(ctx, raw); err != nil || resp.ErrorCode != tiaf {
		t.Fatalf("EndTxn for tx-no: %v %+v", err, resp)
	}
	ao := kmsg.NewPtrAddOffsetsToTxnRequest()
	ao.TransactionalID, ao.Group = "tx-ok", "g"
	if resp, err := ao.RequestWith(ctx, raw); err != nil || resp.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("AddOffsetsToTxn to a group alice may not read: %v %+v", err, resp)
	}
	ap := kmsg.NewPtrAddPartitionsToTxnRequest()
	ap.TransactionalID = "tx-ok"
	for _, topic := range []string{"out", "elsewhere"} {
		at := kmsg.NewAddPartitionsToTxnRequestTopic()
		at.Topic, at.Partitions = topic, []int32{0}
		ap.Topics = append(ap.Topics, at)
	}
	if resp, err := ap.RequestWith(ctx, raw); err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.OperationNotAttempted.Code ||
		resp.Topics[1].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("AddPartitionsToTxn with a topic alice may not write: %v %+v", err, resp)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKeys, fc.CoordinatorType = []string{"tx-no"}, 1 // v4 batches keys
	if resp, err := fc.RequestWith(ctx, raw); err != nil || len(resp.Coordinators) != 1 || resp.Coordinators[0].ErrorCode != tiaf {
		t.Fatalf("FindCoordinator for tx-no: %v %+v", err, resp)
	}
	// ListTransactions shows alice her own id only.
	lt, err := kmsg.NewPtrListTransactionsRequest().RequestWith(ctx, raw)
	if err != nil || len(lt.TransactionStates) != 1 || lt.TransactionStates[0].TransactionalID != "tx-ok" {
		t.Fatalf("ListTransactions: %v %+v", err, lt)
	}
	// Idempotent producers: WRITE on a topic suffices; mallory (READ only)
	// is refused.
	if resp := initProducerID(t, raw, nil); resp.ErrorCode != 0 {
		t.Fatalf("alice's idempotent InitProducerId: code %d", resp.ErrorCode)
	}
	if resp := initProducerID(t, direct(t, newKgo(t, addr, fromHost(malloryHost))), nil); resp.ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("mallory's idempotent InitProducerId: code %d", resp.ErrorCode)
	}
}

// ACLs are managed with kadm (the same requests kafka-acls.sh sends):
// creating and deleting need ALTER on the cluster, listing DESCRIBE;
// filters select as Kafka's do; ACLs survive a restart; super users bypass
// them.
func TestACLAdmin(t *testing.T) {
	dir := t.TempDir()
	b, addr := aclBroker(t, dir, Options{})
	ctx := ctxT(t)
	adm := kadm.NewClient(newKgo(t, addr, fromHost(adminHost)))
	created, err := adm.CreateACLs(ctx, kadm.NewACLs().Topics("orders").Groups("g").
		Allow("User:alice").AllowHosts(aliceHost).Operations(kadm.OpRead, kadm.OpDescribe))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range created {
		if c.Err != nil {
			t.Fatalf("create %s on %s: %v", c.Operation, c.Name, c.Err)
		}
	}
	if _, err := adm.CreateACLs(ctx, kadm.NewACLs().Topics("logs-").ResourcePatternType(kadm.ACLPatternPrefixed).
		Deny("User:*").Operations(kadm.OpWrite)); err != nil {
		t.Fatal(err)
	}
	// A filter of MATCH for topic orders finds its literal ACLs, and the
	// admin's wildcard one; not logs-.
	described, err := adm.DescribeACLs(ctx, kadm.NewACLs().Topics("orders").ResourcePatternType(kadm.ACLPatternMatch).
		Operations().Allow().Deny().AllowHosts().DenyHosts())
	if err != nil || described[0].Err != nil {
		t.Fatal(err, described)
	}
	var names []string
	for _, d := range described[0].Described {
		names = append(names, d.Name+"/"+d.Principal+"/"+d.Operation.String())
	}
	slices.Sort(names)
	want := []string{"*/User:ANONYMOUS/ALL", "orders/User:alice/DESCRIBE", "orders/User:alice/READ"}
	if !slices.Equal(names, want) {
		t.Fatalf("MATCH orders: %v, want %v", names, want)
	}
	// Alice's host is not the admin: she may not list or change ACLs.
	alice := kadm.NewClient(newKgo(t, addr, fromHost(aliceHost)))
	if res, err := alice.DescribeACLs(ctx, kadm.NewACLs().AnyResource().Operations().Allow().AllowHosts()); err != nil ||
		!errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice lists ACLs: %v %v", err, res)
	}
	if res, err := alice.CreateACLs(ctx, kadm.NewACLs().Topics("x").Allow("User:alice").Operations(kadm.OpAll)); err != nil ||
		!errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice creates an ACL: %v %v", err, res)
	}
	if res, err := alice.DeleteACLs(ctx, kadm.NewACLs().AnyResource().Operations().Allow().Deny().AllowHosts().DenyHosts()); err != nil ||
		!errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice deletes ACLs: %v %v", err, res)
	}
	// An invalid creation is refused with INVALID_REQUEST.
	req := kmsg.NewPtrCreateACLsRequest()
	c := kmsg.NewCreateACLsRequestCreation()
	c.ResourceType, c.ResourceName, c.Principal, c.Host = resTopic, "x", "no-colon", "*"
	c.Operation, c.PermissionType = opRead, kmsg.ACLPermissionTypeAllow
	req.Creations = append(req.Creations, c)
	if resp, err := req.RequestWith(ctx, newKgo(t, addr, fromHost(adminHost))); err != nil ||
		resp.Results[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("create with a bad principal: %v %+v", err, resp)
	}

	// Delete the DESCRIBE ones by filter; the rest stays, across a restart.
	deleted, err := adm.DeleteACLs(ctx, kadm.NewACLs().Topics().Groups().ResourcePatternType(kadm.ACLPatternAny).
		Operations(kadm.OpDescribe).Allow().AllowHosts())
	if err != nil || len(deleted) != 2 || len(deleted[0].Deleted)+len(deleted[1].Deleted) != 2 {
		t.Fatalf("delete DESCRIBE ACLs: %v %+v", err, deleted)
	}
	before, err := b.authz.Describe(anyFilter())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, _ := testBrokerDir(t, dir, Options{ACL: true})
	after, err := b2.authz.Describe(anyFilter())
	if err != nil || !slices.Equal(before, after) || len(after) != 4+2+1 {
		t.Fatalf("after a restart the ACLs are %v (%v); before %v", after, err, before)
	}
}

func anyFilter() acl.Filter {
	return acl.Filter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
}

// Super users bypass every ACL, DENY included; with no authorizer the ACL
// requests answer SECURITY_DISABLED and everything else is served as
// before.
func TestACLSuperUserAndDisabled(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), Options{SuperUsers: []string{anon}},
		denied(allowB(resTopic, acl.Wildcard, acl.WildcardPrincipal, "*", kmsg.ACLOperationAll)))
	ctx := ctxT(t)
	cl := newKgo(t, addr, fromHost(malloryHost))
	createTopic(t, cl, "t", 1)
	if err := produceTo(ctx, cl, "t", "v"); err != nil {
		t.Fatalf("a super user's produce under a DENY for everyone: %v", err)
	}

	_, plain := testBroker(t, Options{})
	pcl := newKgo(t, plain)
	adm := kadm.NewClient(pcl)
	res, err := adm.CreateACLs(ctx, kadm.NewACLs().Topics("t").Allow("User:alice").Operations(kadm.OpRead))
	if err != nil || !errors.Is(res[0].Err, kerr.SecurityDisabled) {
		t.Fatalf("CreateAcls without an authorizer: %v %v", err, res)
	}
	createTopic(t, pcl, "t", 1)
	if err := produceTo(ctx, pcl, "t", "v"); err != nil {
		t.Fatalf("produce without an authorizer: %v", err)
	}
}

// librdkafka (kcat) is refused with "Topic authorization failed" and
// served once an ACL allows its host.
func TestACLKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	b, addr := aclBroker(t, t.TempDir(), Options{})
	createTopic(t, newKgo(t, addr, fromHost(adminHost)), "rd", 1)
	// The admin ACLs cover 127.0.0.1, kcat's address: remove them, so
	// kcat starts with no rights.
	if _, errs := b.authz.Delete([]acl.Filter{{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Host: kmsg.StringPtr(adminHost), Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctxT(t), kcat, append([]string{"-b", addr, "-t", "rd", "-X", "message.timeout.ms=5000"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("denied\n", "-P")
	if err == nil || !strings.Contains(out, "authorization failed") {
		t.Fatalf("kcat produced without an ACL (%v):\n%s", err, out)
	}
	out, err = run("", "-C", "-e", "-q")
	if err == nil || !strings.Contains(out, "authorization failed") {
		t.Fatalf("kcat consumed without an ACL (%v):\n%s", err, out)
	}
	for i, err := range b.authz.Create([]acl.Binding{
		allowB(resTopic, "rd", acl.WildcardPrincipal, adminHost, opWrite),
		allowB(resTopic, "rd", acl.WildcardPrincipal, adminHost, opRead),
	}) {
		if err != nil {
			t.Fatal(i, err)
		}
	}
	if out, err := run("a\nb\n", "-P"); err != nil {
		t.Fatalf("kcat produce with an ACL: %v\n%s", err, out)
	}
	out, err = run("", "-C", "-e", "-q")
	if err != nil || out != "a\nb\n" {
		t.Fatalf("kcat consume with an ACL: %v\n%q", err, out)
	}
}

// BenchmarkProduceAcks1ACL is BenchmarkProduceAcks1 with the authorizer on
// and the producer allowed by a prefixed ACL among a thousand others: the
// cost of the checks on the hot path.
func BenchmarkProduceAcks1ACL(b *testing.B) {
	br, addr := testBroker(b, Options{ACL: true})
	bs := []acl.Binding{
		allowB(resCluster, acl.ClusterName, anon, "*", opCreate),
		prefixed(allowB(resTopic, "ben", anon, "*", opWrite)),
	}
	for i := range 1000 {
		bs = append(bs, allowB(resTopic, fmt.Sprintf("other-%d", i), "User:someone", "*", opWrite))
	}
	for _, err := range br.authz.Create(bs) {
		if err != nil {
			b.Fatal(err)
		}
	}
	benchProduceTo(b, addr, kgo.LeaderAck())
}

// KIP-430: asked for, Metadata and DescribeGroups report the operations
// the client may do on each topic and group (franz-go negotiates Metadata
// v11+, where the cluster's moved to DescribeCluster).
func TestACLAuthorizedOperations(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), Options{},
		allowB(resTopic, "t", anon, aliceHost, opRead),
		allowB(resGroup, "g", anon, aliceHost, opDescribe))
	createTopic(t, newKgo(t, addr, fromHost(adminHost)), "t", 1)
	alice := direct(t, newKgo(t, addr, fromHost(aliceHost)))
	bits := func(ops ...acl.Operation) (b int32) {
		for _, op := range ops {
			b |= 1 << op
		}
		return b
	}
	md := kmsg.NewPtrMetadataRequest()
	md.IncludeTopicAuthorizedOperations = true
	resp, err := md.RequestWith(ctxT(t), alice)
	if err != nil || len(resp.Topics) != 1 {
		t.Fatalf("metadata: %v %+v", err, resp)
	}
	if got, want := resp.Topics[0].AuthorizedOperations, bits(opRead, opDescribe); got != want {
		t.Errorf("alice's operations on t: %v, want %v", kadm.DecodeACLOperations(got), kadm.DecodeACLOperations(want))
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups, dg.IncludeAuthorizedOperations = []string{"g"}, true
	gresp, err := dg.RequestWith(ctxT(t), alice)
	if err != nil || gresp.Groups[0].AuthorizedOperations != bits(opDescribe) {
		t.Fatalf("describe groups: %v %+v", err, gresp)
	}
}

// TestACLConsumerProtocolGroup: ConsumerGroupHeartbeat needs READ on the
// group and DESCRIBE on each topic named; ConsumerGroupDescribe needs
// DESCRIBE on the group.
func TestACLConsumerProtocolGroup(t *testing.T) {
	_, addr := aclBroker(t, t.TempDir(), kip848Options(),
		allowB(resTopic, "in", anon, aliceHost, opRead),
		allowB(resGroup, "g", anon, aliceHost, opRead),
		allowB(resGroup, "g", anon, malloryHost, opDescribe),
		allowB(resTopic, "in", anon, malloryHost, opDescribe),
	)
	admin := newKgo(t, addr, fromHost(adminHost))
	createTopic(t, admin, "in", 2)
	createTopic(t, admin, "secret", 1)
	join := func(cl *kgo.Client, member string, topics ...string) int16 {
		return heartbeat848(t, cl, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.Group, r.MemberID, r.SubscribedTopicNames = "g", member, topics
			r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		}).ErrorCode
	}
	alice := newKgo(t, addr, fromHost(aliceHost))
	mallory := newKgo(t, addr, fromHost(malloryHost))
	if ec := join(alice, "A", "in", "secret"); ec != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("alice subscribing to a topic she may not describe: %v", kerr.ErrorForCode(ec))
	}
	if ec := join(mallory, "M", "in"); ec != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("mallory joining without READ on the group: %v", kerr.ErrorForCode(ec))
	}
	if ec := join(alice, "A", "in"); ec != 0 {
		t.Fatalf("alice joins: %v", kerr.ErrorForCode(ec))
	}
	d, err := kadm.NewClient(mallory).DescribeConsumerGroups(ctxT(t), "g")
	if err != nil || d["g"].Err != nil || len(d["g"].Members) != 1 {
		t.Fatalf("mallory describes g: %v %+v", err, d["g"])
	}
	// Mallory may describe g, not groups no ACL names.
	if ec := heartbeat848(t, direct(t, mallory), func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.Group, r.MemberID, r.SubscribedTopicNames = "other", "M", []string{"in"}
		r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	}).ErrorCode; ec != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("mallory joins other: %v", kerr.ErrorForCode(ec))
	}
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{"other"}
	// kgo finds the coordinator first, which already needs DESCRIBE; the
	// broker's own answer is checked on a direct connection.
	resp, err := req.RequestWith(ctxT(t), direct(t, mallory))
	if err != nil || resp.Groups[0].ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("mallory describes other: %v %+v", err, resp)
	}
}
