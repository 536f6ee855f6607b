package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// api is one supported request kind: the version range the broker
// advertises and the handler. The table below is the one place versions are
// decided; issue-by-issue additions (groups, transactions) add rows.
type api struct {
	key      kmsg.Key
	min, max int16
	handle   func(r *request) reply
}

// apiTable lists what the broker speaks. Ranges are chosen so that clients
// that negotiate (franz-go, sarama, librdkafka), clients pinned to old
// versions (kafka-go's Conn: Fetch 5/10, Produce 3/7, ListOffsets 1,
// Metadata 1/6) and clients that never use flexible versions all find a
// common version, and stay below versions that require topic IDs (Fetch 13,
// Metadata 12, DeleteTopics 6, CreateTopics 7 returns one) since the broker
// has none yet. Produce starts at 3 and Fetch at 4: older versions carry
// the pre-0.11 message format, which the broker does not store.
var apiTable []api

func init() {
	// Assigned in init because handleApiVersions reads the table.
	apiTable = []api{
		{kmsg.Produce, 3, 9, handleProduce},
		{kmsg.Fetch, 4, 12, handleFetch},
		{kmsg.ListOffsets, 1, 6, handleListOffsets},
		{kmsg.Metadata, 0, 11, handleMetadata},
		{kmsg.ApiVersions, 0, 4, handleApiVersions},
		{kmsg.CreateTopics, 0, 6, handleCreateTopics},
		{kmsg.DeleteTopics, 0, 5, handleDeleteTopics},
		// DeleteRecords (handle_records.go): v2 is the flexible version
		// kadm and librdkafka negotiate; kafka-go uses v0.
		{kmsg.DeleteRecords, 0, 2, handleDeleteRecords},
		{kmsg.CreatePartitions, 0, 3, handleCreatePartitions},
		{kmsg.DescribeConfigs, 0, 4, handleDescribeConfigs},
		{kmsg.AlterConfigs, 0, 2, handleAlterConfigs},
		{kmsg.IncrementalAlterConfigs, 0, 1, handleIncrementalAlterConfigs},
		// v4 is the newest before KIP-890's transaction version 2; franz-go,
		// sarama and librdkafka all negotiate down to it.
		{kmsg.InitProducerID, 0, 4, handleInitProducerID},
		// Transactions (KIP-98), as Kafka before KIP-890 part 2 speaks
		// them: AddPartitionsToTxn v4 (batched, broker to broker) and
		// EndTxn v5 (transaction version 2) are left out, so clients keep
		// the classic protocol.
		{kmsg.AddPartitionsToTxn, 0, 3, handleAddPartitionsToTxn},
		{kmsg.AddOffsetsToTxn, 0, 3, handleAddOffsetsToTxn},
		{kmsg.EndTxn, 0, 3, handleEndTxn},
		{kmsg.TxnOffsetCommit, 0, 3, handleTxnOffsetCommit},
		// Transaction introspection (KIP-664). ListTransactions v2 adds a
		// regular-expression filter, not served.
		{kmsg.DescribeProducers, 0, 0, handleDescribeProducers},
		{kmsg.DescribeTransactions, 0, 0, handleDescribeTransactions},
		{kmsg.ListTransactions, 0, 1, handleListTransactions},
		// Consumer groups, classic protocol. kafka-go pins JoinGroup v1/v2,
		// SyncGroup v0, OffsetCommit v2, OffsetFetch v1, FindCoordinator
		// v0; franz-go and sarama negotiate up to these maxima. OffsetCommit
		// and OffsetFetch v9 carry a consumer-protocol member's epoch
		// (KIP-848); v10 names topics by id. FindCoordinator v4 batches keys.
		{kmsg.FindCoordinator, 0, 4, handleFindCoordinator},
		{kmsg.JoinGroup, 0, 7, handleJoinGroup},
		{kmsg.SyncGroup, 0, 5, handleSyncGroup},
		{kmsg.Heartbeat, 0, 4, handleHeartbeat},
		{kmsg.LeaveGroup, 0, 4, handleLeaveGroup},
		{kmsg.OffsetCommit, 0, 9, handleOffsetCommit},
		{kmsg.OffsetFetch, 0, 9, handleOffsetFetch},
		{kmsg.ListGroups, 0, 5, handleListGroups}, // v5: group types (KIP-848)
		{kmsg.DescribeGroups, 0, 5, handleDescribeGroups},
		{kmsg.DeleteGroups, 0, 2, handleDeleteGroups},
		{kmsg.OffsetDelete, 0, 0, handleOffsetDelete},
		// Consumer-protocol groups (KIP-848, handle_consumer_group.go): v1
		// has clients name their members and adds regex subscriptions,
		// what Kafka 4.0 serves and franz-go requires.
		{kmsg.ConsumerGroupHeartbeat, 0, 1, handleConsumerGroupHeartbeat},
		{kmsg.ConsumerGroupDescribe, 0, 1, handleConsumerGroupDescribe},
		// ACLs (handle_acl.go): v1 adds PREFIXED patterns (KIP-290), v2
		// flexible versions; v3 (USER resources, KIP-554) is what current
		// kafka-acls.sh, kadm and librdkafka negotiate to or below.
		{kmsg.DescribeACLs, 0, 3, handleDescribeACLs},
		{kmsg.CreateACLs, 0, 3, handleCreateACLs},
		{kmsg.DeleteACLs, 0, 3, handleDeleteACLs},
		// Authentication (sasl.go). librdkafka needs v0 listed to use
		// SASL at all; after a v0 handshake the client sends bare SASL
		// tokens instead of SaslAuthenticate (conn.readLoop).
		{kmsg.SASLHandshake, 0, 1, handleSASLHandshake},
		{kmsg.SASLAuthenticate, 0, 2, handleSASLAuthenticate},
		{kmsg.DescribeUserSCRAMCredentials, 0, 0, handleDescribeUserSCRAMCredentials},
		{kmsg.AlterUserSCRAMCredentials, 0, 0, handleAlterUserSCRAMCredentials},
		// The cluster APIs of a one-node cluster (handle_cluster.go).
		// DescribeCluster v2 adds fenced brokers, which a single node never
		// has; ElectLeaders v1 adds the election type.
		{kmsg.DescribeCluster, 0, 2, handleDescribeCluster},
		{kmsg.ElectLeaders, 0, 2, handleElectLeaders},
		{kmsg.AlterPartitionAssignments, 0, 1, handleAlterPartitionAssignments},
		{kmsg.ListPartitionReassignments, 0, 0, handleListPartitionReassignments},
		// Client quotas (handle_quotas.go); v1 is the flexible version.
		{kmsg.DescribeClientQuotas, 0, 1, handleDescribeClientQuotas},
		{kmsg.AlterClientQuotas, 0, 1, handleAlterClientQuotas},
	}
	apis = make(map[int16]*api, len(apiTable))
	for i := range apiTable {
		apis[int16(apiTable[i].key)] = &apiTable[i]
	}
}

// apis indexes apiTable by key.
var apis map[int16]*api

// reply produces a request's response once everything it waits for is
// done (an fsync, a long-poll). Replies of one connection are called in
// request order, on the connection's writer. A nil *outgoing means no
// response (produce with acks=0).
type reply func() *outgoing

// outgoing is an encoded-to-be response. sections, in encoding order,
// replace the fetch responses' RecordBatches placeholders with file bytes.
type outgoing struct {
	resp     kmsg.Response
	sections []section
	// raw sends token alone, length-prefixed without a response header:
	// a SASL token after SaslHandshake v0.
	raw   bool
	token []byte
}

func respond(resp kmsg.Response) reply {
	return func() *outgoing { return &outgoing{resp: resp} }
}

func handleApiVersions(r *request) reply {
	resp := r.msg.(*kmsg.ApiVersionsRequest).ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = supportedVersions()
	return respond(resp)
}

func supportedVersions() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apiTable))
	for _, a := range apiTable {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = int16(a.key), a.min, a.max
		keys = append(keys, k)
	}
	return keys
}
