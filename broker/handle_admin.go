package broker

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

func handleCreateTopics(r *request) reply {
	req := r.msg.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	b := r.c.b
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	mayCreateAll := b.authz == nil || r.may(opCreate, resCluster, acl.ClusterName)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		var err error
		if seen[rt.Topic] == 1 && !mayCreateAll && !r.authorized(opCreate, resTopic, rt.Topic) {
			err = errorf(kerr.TopicAuthorizationFailed, "creating topic %s needs CREATE on it or on the cluster", rt.Topic)
		} else {
			err = b.createTopic(rt, req.ValidateOnly, seen[rt.Topic] > 1)
		}
		st.ErrorCode, st.ErrorMessage = codeOf(err)
		if err == nil && !r.may(opDescribeConfigs, resTopic, rt.Topic) {
			// Created, but its configs are not the client's to see.
			st.ConfigErrorCode = kerr.TopicAuthorizationFailed.Code
			st.NumPartitions, st.ReplicationFactor = -1, -1
		} else if err == nil {
			st.NumPartitions = rt.NumPartitions
			if st.NumPartitions == -1 {
				st.NumPartitions = b.opts.DefaultPartitions
			}
			st.ReplicationFactor = 1
			if t := b.topics.get(rt.Topic); t != nil {
				for _, c := range b.describeTopicConfigs(t, nil) {
					sc := kmsg.NewCreateTopicsResponseTopicConfig()
					sc.Name, sc.Value, sc.ReadOnly, sc.Source = c.Name, c.Value, c.ReadOnly, int8(c.Source)
					st.Configs = append(st.Configs, sc)
				}
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}

func (b *Broker) createTopic(rt kmsg.CreateTopicsRequestTopic, validateOnly, duplicate bool) error {
	if duplicate {
		return errorf(kerr.InvalidRequest, "topic %s is named more than once in one request", rt.Topic)
	}
	if rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1 {
		return errorf(kerr.InvalidReplicationFactor,
			"replication factor %d not possible on the built-in broker: it has one node; use replication-factor 1 or an external Kafka cluster", rt.ReplicationFactor)
	}
	partitions := rt.NumPartitions
	if len(rt.ReplicaAssignment) > 0 {
		if partitions != -1 {
			return errorf(kerr.InvalidRequest, "give either a partition count or a replica assignment, not both")
		}
		for _, a := range rt.ReplicaAssignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != b.opts.NodeID {
				return errorf(kerr.InvalidReplicaAssignment,
					"replica assignment %v not possible on the built-in broker: it has one node, id %d", a.Replicas, b.opts.NodeID)
			}
		}
		partitions = int32(len(rt.ReplicaAssignment))
	}
	configs := map[string]string{}
	for _, c := range rt.Configs {
		if c.Value == nil {
			continue
		}
		configs[c.Name] = *c.Value
	}
	if len(configs) == 0 {
		configs = nil
	}
	_, err := b.topics.create(rt.Topic, partitions, configs, validateOnly)
	return err
}

func handleDeleteTopics(r *request) reply {
	req := r.msg.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	b := r.c.b
	for _, name := range req.TopicNames {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic = kmsg.StringPtr(name)
		// As Kafka: whether the topic exists is told only to a client that
		// may describe it.
		switch {
		case !r.authorized(opDescribe, resTopic, name):
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
		case b.topics.get(name) != nil && !r.authorized(opDelete, resTopic, name):
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
		case isInternalTopic(name):
			st.ErrorCode, st.ErrorMessage = codeOf(internalTopicError("delete"))
		default:
			st.ErrorCode, st.ErrorMessage = codeOf(b.topics.delete(name))
		}
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}

func handleDescribeConfigs(r *request) reply {
	req := r.msg.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	b := r.c.b
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if !r.authorized(opDescribeConfigs, resTopic, rr.ResourceName) {
				sr.ErrorCode = kerr.TopicAuthorizationFailed.Code
				break
			}
			t := b.topics.get(rr.ResourceName)
			if t == nil {
				sr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				sr.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("topic %s does not exist", rr.ResourceName))
				break
			}
			sr.Configs = b.describeTopicConfigs(t, rr.ConfigNames)
		case kmsg.ConfigResourceTypeBroker:
			if !r.authorizedCluster(opDescribeConfigs) {
				sr.ErrorCode = kerr.ClusterAuthorizationFailed.Code
				break
			}
			switch rr.ResourceName {
			case strconv.Itoa(int(b.opts.NodeID)):
				sr.Configs = b.describeBrokerConfigs(rr.ConfigNames)
			case "":
				// The cluster-wide defaults: only those set.
				for name, v := range b.opts.dynamic.scope(false) {
					if rr.ConfigNames != nil && !contains(rr.ConfigNames, name) {
						continue
					}
					c := kmsg.NewDescribeConfigsResponseResourceConfig()
					c.Name, c.Value, c.Source = name, kmsg.StringPtr(v), kmsg.ConfigSourceDynamicDefaultBrokerConfig
					c.ConfigType = kmsg.ConfigType(brokerDef(name).typ)
					sr.Configs = append(sr.Configs, c)
				}
				slices.SortFunc(sr.Configs, func(a, b kmsg.DescribeConfigsResponseResourceConfig) int { return strings.Compare(a.Name, b.Name) })
			default:
				sr.ErrorCode = kerr.InvalidRequest.Code
				sr.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("broker %q: this is node %d; name it, or \"\" for the cluster-wide defaults", rr.ResourceName, b.opts.NodeID))
			}
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
			sr.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("describing configs of resource type %d is not supported by the built-in broker; topics are", rr.ResourceType))
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return respond(resp)
}

// describeTopicConfigs lists the topic's configs, all of them when names is
// nil.
func (b *Broker) describeTopicConfigs(t *topic, names []string) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for i := range topicConfigDefs {
		def := &topicConfigDefs[i]
		if names != nil && !contains(names, def.name) {
			continue
		}
		v, set := t.value(def, b.opts)
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value = def.name, kmsg.StringPtr(v)
		c.IsDefault = !set
		c.Source = kmsg.ConfigSourceDefaultConfig
		if set {
			c.Source = kmsg.ConfigSourceDynamicTopicConfig
		} else if _, src, ok := b.opts.dynamic.get(def.broker); ok {
			c.Source, c.IsDefault = src, false
		}
		c.ConfigType = kmsg.ConfigType(def.typ)
		out = append(out, c)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
