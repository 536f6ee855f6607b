package broker

import (
	"encoding/binary"
	"hash/crc32"
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// discardConn stands in for a client connection: responses go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (discardConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092} }
func (discardConn) Close() error                { return nil }

// testBatch encodes an uncompressed magic v2 record batch, as producers do.
func testBatch(values ...string) []byte {
	rb := kmsg.NewRecordBatch()
	rb.Magic = 2
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
	rb.FirstTimestamp, rb.MaxTimestamp = 1_700_000_000_000, 1_700_000_000_000
	rb.LastOffsetDelta = int32(len(values) - 1)
	rb.NumRecords = int32(len(values))
	var recs []byte
	for i, v := range values {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.Value = []byte(v)
		body := r.AppendTo(nil)
		// AppendTo wrote Length 0 first; re-encode with the real length.
		r.Length = int32(len(body) - 1)
		recs = r.AppendTo(recs)
	}
	rb.Records = recs
	rb.Length = int32(49 + len(recs))
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// seedRequests are real requests, encoded the way franz-go encodes them,
// for every API the broker serves.
func seedRequests() [][]byte {
	var reqs []kmsg.Request
	for _, v := range []int16{0, 3, 4} {
		r := kmsg.NewPtrApiVersionsRequest()
		r.Version = v
		r.ClientSoftwareName, r.ClientSoftwareVersion = "kgo", "1.0"
		reqs = append(reqs, r)
	}
	for _, v := range []int16{0, 1, 9, 11} {
		r := kmsg.NewPtrMetadataRequest()
		r.Version = v
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr("fuzz")
		r.Topics = append(r.Topics, t)
		reqs = append(reqs, r)
	}
	for _, v := range []int16{0, 5} {
		r := kmsg.NewPtrCreateTopicsRequest()
		r.Version = v
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic, t.NumPartitions, t.ReplicationFactor = "fuzz", 2, 1
		r.Topics = append(r.Topics, t)
		reqs = append(reqs, r)
	}
	for _, v := range []int16{3, 7, 9} {
		for _, acks := range []int16{-1, 1, 0} {
			r := kmsg.NewPtrProduceRequest()
			r.Version, r.Acks, r.TimeoutMillis = v, acks, 1000
			t := kmsg.NewProduceRequestTopic()
			t.Topic = "fuzz"
			p := kmsg.NewProduceRequestTopicPartition()
			p.Records = testBatch("one", "two")
			t.Partitions = append(t.Partitions, p)
			r.Topics = append(r.Topics, t)
			reqs = append(reqs, r)
		}
	}
	for _, v := range []int16{4, 10, 12} {
		r := kmsg.NewPtrFetchRequest()
		r.Version, r.MaxBytes, r.MinBytes, r.MaxWaitMillis = v, 1<<20, 1, 10
		t := kmsg.NewFetchRequestTopic()
		t.Topic = "fuzz"
		p := kmsg.NewFetchRequestTopicPartition()
		p.PartitionMaxBytes = 1 << 20
		t.Partitions = append(t.Partitions, p)
		r.Topics = append(r.Topics, t)
		reqs = append(reqs, r)
	}
	for _, v := range []int16{0, 2, 4} {
		for _, txn := range []*string{nil, kmsg.StringPtr("fuzz-txn")} {
			r := kmsg.NewPtrInitProducerIDRequest()
			r.Version, r.TransactionalID = v, txn
			reqs = append(reqs, r)
		}
	}
	{
		// An idempotent producer's first batch.
		r := kmsg.NewPtrProduceRequest()
		r.Version, r.Acks, r.TimeoutMillis = 9, -1, 1000
		t := kmsg.NewProduceRequestTopic()
		t.Topic = "fuzz"
		p := kmsg.NewProduceRequestTopicPartition()
		p.Records = idemTestBatch(0, 0, 0, "one", "two")
		t.Partitions = append(t.Partitions, p)
		r.Topics = append(r.Topics, t)
		reqs = append(reqs, r)
	}
	for _, v := range []int16{1, 6} {
		r := kmsg.NewPtrListOffsetsRequest()
		r.Version = v
		t := kmsg.NewListOffsetsRequestTopic()
		t.Topic = "fuzz"
		for _, ts := range []int64{-1, -2, 1_700_000_000_000} {
			p := kmsg.NewListOffsetsRequestTopicPartition()
			p.Timestamp = ts
			t.Partitions = append(t.Partitions, p)
		}
		r.Topics = append(r.Topics, t)
		reqs = append(reqs, r)
	}
	for _, v := range []int16{1, 4} {
		r := kmsg.NewPtrDescribeConfigsRequest()
		r.Version = v
		res := kmsg.NewDescribeConfigsRequestResource()
		res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, "fuzz"
		r.Resources = append(r.Resources, res)
		reqs = append(reqs, r)
	}
	for _, v := range []int16{0, 4} {
		r := kmsg.NewPtrDeleteTopicsRequest()
		r.Version = v
		r.TopicNames = []string{"fuzz"}
		reqs = append(reqs, r)
	}
	// Transactions: the calls of one transaction, in order, and a
	// read_committed fetch.
	for _, v := range []int16{0, 3} {
		r := kmsg.NewPtrFindCoordinatorRequest()
		r.Version, r.CoordinatorType, r.CoordinatorKey = v, 1, "fuzz-txn"
		reqs = append(reqs, r)
		ap := kmsg.NewPtrAddPartitionsToTxnRequest()
		ap.Version, ap.TransactionalID = v, "fuzz-txn"
		at := kmsg.NewAddPartitionsToTxnRequestTopic()
		at.Topic, at.Partitions = "fuzz", []int32{0}
		ap.Topics = append(ap.Topics, at)
		reqs = append(reqs, ap)
		ao := kmsg.NewPtrAddOffsetsToTxnRequest()
		ao.Version, ao.TransactionalID, ao.Group = v, "fuzz-txn", "fuzz-group"
		reqs = append(reqs, ao)
		oc := kmsg.NewPtrTxnOffsetCommitRequest()
		oc.Version, oc.TransactionalID, oc.Group, oc.Generation = v, "fuzz-txn", "fuzz-group", -1
		ot := kmsg.NewTxnOffsetCommitRequestTopic()
		ot.Topic = "fuzz"
		op := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		op.Offset = 1
		ot.Partitions = append(ot.Partitions, op)
		oc.Topics = append(oc.Topics, ot)
		reqs = append(reqs, oc)
		pr := kmsg.NewPtrProduceRequest()
		pr.Version, pr.Acks, pr.TimeoutMillis = 9, -1, 1000
		pr.TransactionID = kmsg.StringPtr("fuzz-txn")
		pt := kmsg.NewProduceRequestTopic()
		pt.Topic = "fuzz"
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Records = idemTestBatch(0, 0, 0, "t")
		pp.Records[22] |= 0x10 // transactional
		reCRC(pp.Records)
		pt.Partitions = append(pt.Partitions, pp)
		pr.Topics = append(pr.Topics, pt)
		reqs = append(reqs, pr)
		for _, commit := range []bool{true, false} {
			e := kmsg.NewPtrEndTxnRequest()
			e.Version, e.TransactionalID, e.Commit = v, "fuzz-txn", commit
			reqs = append(reqs, e)
		}
		fr := kmsg.NewPtrFetchRequest()
		fr.Version, fr.MaxBytes, fr.MinBytes, fr.MaxWaitMillis, fr.IsolationLevel = 11, 1<<20, 1, 10, 1
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "fuzz"
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes = 1 << 20
		ft.Partitions = append(ft.Partitions, fp)
		fr.Topics = append(fr.Topics, ft)
		reqs = append(reqs, fr)
	}
	{
		lt := kmsg.NewPtrListTransactionsRequest()
		lt.Version, lt.StateFilters, lt.DurationFilterMillis = 1, []string{"Ongoing"}, -1
		dt := kmsg.NewPtrDescribeTransactionsRequest()
		dt.TransactionalIDs = []string{"fuzz-txn"}
		dp := kmsg.NewPtrDescribeProducersRequest()
		dpt := kmsg.NewDescribeProducersRequestTopic()
		dpt.Topic, dpt.Partitions = "fuzz", []int32{0}
		dp.Topics = append(dp.Topics, dpt)
		reqs = append(reqs, lt, dt, dp)
	}
	{
		// DeleteRecords (offsets inside, at and past the end, -1) and
		// OffsetDelete.
		dr := kmsg.NewPtrDeleteRecordsRequest()
		dr.Version = 2
		drt := kmsg.NewDeleteRecordsRequestTopic()
		drt.Topic = "fuzz"
		for _, off := range []int64{1, -1, 1 << 40, -2} {
			drp := kmsg.NewDeleteRecordsRequestTopicPartition()
			drp.Offset = off
			drt.Partitions = append(drt.Partitions, drp)
		}
		dr.Topics = append(dr.Topics, drt)
		od := kmsg.NewPtrOffsetDeleteRequest()
		od.Group = "fuzz-group"
		odt := kmsg.NewOffsetDeleteRequestTopic()
		odt.Topic = "fuzz"
		for _, p := range []int32{0, 1, -1} {
			odp := kmsg.NewOffsetDeleteRequestTopicPartition()
			odp.Partition = p
			odt.Partitions = append(odt.Partitions, odp)
		}
		od.Topics = append(od.Topics, odt)
		reqs = append(reqs, dr, od)
	}
	{
		// The cluster APIs of a one-node cluster.
		dc := kmsg.NewPtrDescribeClusterRequest()
		dc.Version, dc.EndpointType, dc.IncludeClusterAuthorizedOperations = 1, 1, true
		el := kmsg.NewPtrElectLeadersRequest()
		el.Version = 2
		elt := kmsg.NewElectLeadersRequestTopic()
		elt.Topic, elt.Partitions = "fuzz", []int32{0, 0, 1}
		el.Topics = append(el.Topics, elt)
		ap := kmsg.NewPtrAlterPartitionAssignmentsRequest()
		apt := kmsg.NewAlterPartitionAssignmentsRequestTopic()
		apt.Topic = "fuzz"
		for _, replicas := range [][]int32{{0}, nil, {}, {0, 0}, {1}} {
			app := kmsg.NewAlterPartitionAssignmentsRequestTopicPartition()
			app.Replicas = replicas
			apt.Partitions = append(apt.Partitions, app)
		}
		ap.Topics = append(ap.Topics, apt)
		lr := kmsg.NewPtrListPartitionReassignmentsRequest()
		reqs = append(reqs, dc, el, ap, lr)
	}
	{
		// Config changes, of a topic and of the broker.
		ac := kmsg.NewPtrAlterConfigsRequest()
		ac.Version = 2
		acr := kmsg.NewAlterConfigsRequestResource()
		acr.ResourceType, acr.ResourceName = kmsg.ConfigResourceTypeTopic, "fuzz"
		acc := kmsg.NewAlterConfigsRequestResourceConfig()
		acc.Name, acc.Value = "retention.ms", kmsg.StringPtr("60000")
		acr.Configs = append(acr.Configs, acc)
		ac.Resources = append(ac.Resources, acr)
		ic := kmsg.NewPtrIncrementalAlterConfigsRequest()
		ic.Version, ic.ValidateOnly = 1, true
		for _, res := range []struct {
			typ  kmsg.ConfigResourceType
			name string
		}{{kmsg.ConfigResourceTypeTopic, "fuzz"}, {kmsg.ConfigResourceTypeBroker, ""}, {kmsg.ConfigResourceTypeBroker, "0"}} {
			icr := kmsg.NewIncrementalAlterConfigsRequestResource()
			icr.ResourceType, icr.ResourceName = res.typ, res.name
			for op, name := range []string{"max.message.bytes", "segment.bytes", "cleanup.policy", "cleanup.policy"} {
				icc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
				icc.Name, icc.Op, icc.Value = name, kmsg.IncrementalAlterConfigOp(op), kmsg.StringPtr("4096")
				icr.Configs = append(icr.Configs, icc)
			}
			ic.Resources = append(ic.Resources, icr)
		}
		reqs = append(reqs, ac, ic)
	}
	for _, v := range []int16{0, 1} {
		// Client quotas: small byte and request rates on the fuzzing
		// client itself (so the seeds after them are throttled), a
		// default entity, an IP, a refused key and a removal; then
		// filters of each match type.
		aq := kmsg.NewPtrAlterClientQuotasRequest()
		aq.Version = v
		for _, e := range []struct {
			entity []kmsg.AlterClientQuotasRequestEntryEntity
			key    string
			value  float64
			remove bool
		}{
			{[]kmsg.AlterClientQuotasRequestEntryEntity{{Type: "client-id", Name: kmsg.StringPtr("fuzz-client")}}, "producer_byte_rate", 1024, false},
			{[]kmsg.AlterClientQuotasRequestEntryEntity{{Type: "user", Name: nil}, {Type: "client-id", Name: kmsg.StringPtr("fuzz-client")}}, "consumer_byte_rate", 2048, false},
			{[]kmsg.AlterClientQuotasRequestEntryEntity{{Type: "user", Name: kmsg.StringPtr("ANONYMOUS")}}, "request_percentage", 1, false},
			{[]kmsg.AlterClientQuotasRequestEntryEntity{{Type: "ip", Name: kmsg.StringPtr("127.0.0.1")}}, "connection_creation_rate", 5, false},
			{[]kmsg.AlterClientQuotasRequestEntryEntity{{Type: "user", Name: kmsg.StringPtr("fuzz")}}, "bogus", 1.5, false},
			{[]kmsg.AlterClientQuotasRequestEntryEntity{{Type: "user", Name: kmsg.StringPtr("fuzz")}}, "request_percentage", 0, true},
		} {
			aqe := kmsg.NewAlterClientQuotasRequestEntry()
			aqe.Entity = e.entity
			op := kmsg.NewAlterClientQuotasRequestEntryOp()
			op.Key, op.Value, op.Remove = e.key, e.value, e.remove
			aqe.Ops = append(aqe.Ops, op)
			aq.Entries = append(aq.Entries, aqe)
		}
		dq := kmsg.NewPtrDescribeClientQuotasRequest()
		dq.Version = v
		for mt, name := range []*string{kmsg.StringPtr("fuzz-client"), nil, nil} {
			c := kmsg.NewDescribeClientQuotasRequestComponent()
			c.EntityType, c.MatchType, c.Match = []string{"client-id", "user", "ip"}[mt], kmsg.QuotasMatchType(mt), name
			dq.Components = append(dq.Components, c)
		}
		reqs = append(reqs, aq, dq)
	}
	for _, v := range []int16{0, 3} {
		cp := kmsg.NewPtrCreatePartitionsRequest()
		cp.Version = v
		for _, count := range []int32{3, 1} {
			cpt := kmsg.NewCreatePartitionsRequestTopic()
			cpt.Topic, cpt.Count = "fuzz", count
			cpt.Assignment = []kmsg.CreatePartitionsRequestTopicAssignment{{Replicas: []int32{0}}}
			cp.Topics = append(cp.Topics, cpt)
		}
		reqs = append(reqs, cp)
	}
	for _, v := range []int16{0, 1} {
		// Consumer-protocol groups (KIP-848): a join naming topics, one
		// with a regex and owned partitions (not allowed on a join), a
		// heartbeat, a static leave, and describes.
		join := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		join.Version, join.Group, join.MemberID, join.RebalanceTimeoutMillis = v, "fuzz-group", "m1", 5000
		join.SubscribedTopicNames, join.ServerAssignor = []string{"fuzz"}, kmsg.StringPtr("uniform")
		join.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		re := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		re.Version, re.Group, re.MemberID, re.RebalanceTimeoutMillis = v, "fuzz-group", "m2", 5000
		re.SubscribedTopicRegex, re.ServerAssignor, re.InstanceID = kmsg.StringPtr("fu.*"), kmsg.StringPtr("range"), kmsg.StringPtr("i1")
		owned := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		owned.TopicID, owned.Partitions = [16]byte{1}, []int32{0, 1}
		re.Topics = append(re.Topics, owned)
		hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID, hb.MemberEpoch = v, "fuzz-group", "m1", 1
		leave := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		leave.Version, leave.Group, leave.MemberID, leave.MemberEpoch, leave.InstanceID = v, "fuzz-group", "m2", -2, kmsg.StringPtr("i1")
		desc := kmsg.NewPtrConsumerGroupDescribeRequest()
		desc.Version, desc.Groups, desc.IncludeAuthorizedOperations = v, []string{"fuzz-group", "", "none"}, true
		reqs = append(reqs, join, re, hb, leave, desc)
	}
	{
		// OffsetFetch v9 names a member and its epoch per group.
		of := kmsg.NewPtrOffsetFetchRequest()
		of.Version = 9
		ofg := kmsg.NewOffsetFetchRequestGroup()
		ofg.Group, ofg.MemberID, ofg.MemberEpoch = "fuzz-group", kmsg.StringPtr("m1"), 1
		oft := kmsg.NewOffsetFetchRequestGroupTopic()
		oft.Topic, oft.Partitions = "fuzz", []int32{0}
		ofg.Topics = append(ofg.Topics, oft)
		of.Groups = append(of.Groups, ofg, kmsg.NewOffsetFetchRequestGroup())
		reqs = append(reqs, of)
	}
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz-client"))
	var out [][]byte
	for i, r := range reqs {
		out = append(out, f.AppendRequest(nil, r, int32(i))[4:])
	}
	return out
}

// FuzzRequest feeds request frames (without the length prefix) through
// decoding, the handlers and response encoding. Nothing may panic, and a
// request that decodes must produce a response that encodes.
func FuzzRequest(f *testing.F) {
	for _, s := range seedRequests() {
		f.Add(s)
	}
	b, err := Open(f.TempDir(), Options{Logger: testLogger(f), AutoCreateTopics: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	c := newConn(b, discardConn{}, Plaintext)
	c.cancel() // fetches answer at once instead of long-polling
	w := newResponseWriter(discardConn{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 8 || len(data) > 1<<20 {
			return // the frame reader rejects these before dispatch
		}
		req, rep, err := c.dispatch(data)
		if err != nil {
			return
		}
		out := rep()
		if out == nil {
			return
		}
		defer out.release()
		if _, err := w.write(req, out); err != nil {
			t.Fatalf("encode response: %v", err)
		}
	})
}

// aclSeedRequests are CreateAcls, DescribeAcls and DeleteAcls requests of
// every version served, with literal, prefixed, ANY and MATCH patterns.
func aclSeedRequests() []kmsg.Request {
	var reqs []kmsg.Request
	for v := int16(0); v <= 3; v++ {
		pattern := kmsg.ACLResourcePatternTypePrefixed
		if v == 0 {
			pattern = kmsg.ACLResourcePatternTypeLiteral
		}
		cr := kmsg.NewPtrCreateACLsRequest()
		cr.Version = v
		for _, rt := range []kmsg.ACLResourceType{kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster} {
			c := kmsg.NewCreateACLsRequestCreation()
			c.ResourceType, c.ResourceName, c.ResourcePatternType = rt, "fuzz", pattern
			c.Principal, c.Host, c.Operation, c.PermissionType = "User:fuzz", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
			cr.Creations = append(cr.Creations, c)
		}
		dr := kmsg.NewPtrDescribeACLsRequest()
		dr.Version, dr.ResourceType, dr.ResourcePatternType = v, kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
		dr.Operation, dr.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		dm := kmsg.NewPtrDescribeACLsRequest()
		dm.Version, dm.ResourceType, dm.ResourceName, dm.ResourcePatternType = v, kmsg.ACLResourceTypeTopic, kmsg.StringPtr("fuzz-1"), kmsg.ACLResourcePatternTypeMatch
		dm.Principal, dm.Host = kmsg.StringPtr("User:fuzz"), kmsg.StringPtr("*")
		dm.Operation, dm.PermissionType = kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
		del := kmsg.NewPtrDeleteACLsRequest()
		del.Version = v
		f := kmsg.NewDeleteACLsRequestFilter()
		f.ResourceType, f.ResourcePatternType, f.Operation, f.PermissionType = kmsg.ACLResourceTypeGroup, kmsg.ACLResourcePatternTypeAny,
			kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		del.Filters = append(del.Filters, f)
		reqs = append(reqs, cr, dr, dm, del)
	}
	return reqs
}

// FuzzACLRequest is FuzzRequest with the authorizer on: the ACL requests
// with arbitrary filters and bindings, and every other request through its
// checks. Nothing may panic, and every response must encode.
func FuzzACLRequest(f *testing.F) {
	fm := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz-client"))
	for i, r := range aclSeedRequests() {
		f.Add(fm.AppendRequest(nil, r, int32(i))[4:])
	}
	for _, s := range seedRequests() {
		f.Add(s)
	}
	b, err := Open(f.TempDir(), Options{Logger: testLogger(f), AutoCreateTopics: true, ACL: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	// The fuzzing client may change ACLs and reads the topics whose name
	// starts with fuzz; others it may not.
	for _, e := range b.authz.Create([]acl.Binding{
		allowB(resCluster, acl.ClusterName, anonymousPrincipal, "*", kmsg.ACLOperationAll),
		prefixed(allowB(resTopic, "fuzz", anonymousPrincipal, "*", opRead)),
		denied(allowB(resGroup, "*", anonymousPrincipal, "*", opDelete)),
	}) {
		if e != nil {
			f.Fatal(e)
		}
	}
	c := newConn(b, discardConn{}, Plaintext)
	c.cancel()
	w := newResponseWriter(discardConn{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 8 || len(data) > 1<<20 {
			return
		}
		req, rep, err := c.dispatch(data)
		if err != nil {
			return
		}
		out := rep()
		if out == nil {
			return
		}
		defer out.release()
		if _, err := w.write(req, out); err != nil {
			t.Fatalf("encode response: %v", err)
		}
	})
}
