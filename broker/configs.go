package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/durable"
)

// Configs that change while the broker runs (ARCHITECTURE §15):
// AlterConfigs and IncrementalAlterConfigs replace a topic's overrides in
// its topic.json and hand the partitions their new settings at once; the
// broker's dynamic configs (Kafka's log.retention.ms and friends, the
// defaults of topics that do not override them) are kept in
// brokerConfigsFile, per broker and cluster-wide as Kafka keeps them, and
// re-applied to every topic when they change.

// brokerConfigsFile holds the dynamic broker configs in the data directory.
const brokerConfigsFile = "broker-configs.json"

// dynamicConfigs are the configs whose values AlterConfigs may change: the
// broker-level default of each topic config (Kafka's names).
type dynamicConfigs struct {
	mu      sync.RWMutex
	path    string
	Default map[string]string `json:"default,omitempty"` // resource name "": every broker
	Broker  map[string]string `json:"broker,omitempty"`  // resource name: this node's id
}

func loadDynamicConfigs(dir string) (*dynamicConfigs, error) {
	d := &dynamicConfigs{path: filepath.Join(dir, brokerConfigsFile)}
	data, err := os.ReadFile(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err == nil {
		err = json.Unmarshal(data, d)
	}
	if err != nil {
		return nil, fmt.Errorf("dynamic broker configs %s: %w; fix or delete the file (the broker then uses its flags)", d.path, err)
	}
	for _, m := range []map[string]string{d.Default, d.Broker} {
		for k, v := range m {
			if err := checkBrokerConfig(k, v); err != nil {
				return nil, fmt.Errorf("dynamic broker configs %s: %w; fix or delete the file", d.path, err)
			}
		}
	}
	return d, nil
}

// get returns the dynamic value of broker config name and its source: this
// node's override before the cluster-wide one.
func (d *dynamicConfigs) get(name string) (string, kmsg.ConfigSource, bool) {
	if d == nil || name == "" {
		return "", 0, false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if v, ok := d.Broker[name]; ok {
		return v, kmsg.ConfigSourceDynamicBrokerConfig, true
	}
	if v, ok := d.Default[name]; ok {
		return v, kmsg.ConfigSourceDynamicDefaultBrokerConfig, true
	}
	return "", 0, false
}

// replace stores the dynamic configs of one scope (this node, or every
// broker), durably, then makes them the ones in force.
func (d *dynamicConfigs) replace(perBroker bool, configs map[string]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := dynamicConfigs{Default: d.Default, Broker: d.Broker}
	if perBroker {
		next.Broker = configs
	} else {
		next.Default = configs
	}
	data, err := json.MarshalIndent(&next, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(d.path, data); err != nil {
		return fmt.Errorf("store dynamic broker configs: %w", err)
	}
	d.Default, d.Broker = next.Default, next.Broker
	return nil
}

// scope returns the configs of one scope, copied.
func (d *dynamicConfigs) scope(perBroker bool) map[string]string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if perBroker {
		return maps.Clone(d.Broker)
	}
	return maps.Clone(d.Default)
}

// brokerDef returns the topic config whose broker-level default is the
// broker config name.
func brokerDef(name string) *topicConfigDef {
	for i := range topicConfigDefs {
		if topicConfigDefs[i].broker == name {
			return &topicConfigDefs[i]
		}
	}
	return nil
}

// dynamicBrokerConfigNames lists what AlterConfigs may change on a broker.
func dynamicBrokerConfigNames() []string {
	var names []string
	for _, d := range topicConfigDefs {
		names = append(names, d.broker)
	}
	return names
}

func checkBrokerConfig(name, v string) error {
	def := brokerDef(name)
	if def == nil {
		if slices.ContainsFunc(staticBrokerConfigs, func(c staticConfig) bool { return c.name == name }) {
			return errorf(kerr.InvalidRequest, "broker config %s cannot be changed while the broker runs; set it with a flag of sluice broker and restart (dynamic: %s)", name, strings.Join(dynamicBrokerConfigNames(), ", "))
		}
		return errorf(kerr.InvalidConfig, "broker config %q is not supported by the built-in broker; dynamic ones: %s", name, strings.Join(dynamicBrokerConfigNames(), ", "))
	}
	if err := def.check(v); err != nil {
		return errorf(kerr.InvalidConfig, "broker config %s=%q: %v", name, v, err)
	}
	return nil
}

// staticConfig is a broker config described but fixed for the broker's
// life (its flags).
type staticConfig struct {
	name  string
	value func(b *Broker) string
	typ   kmsg.ConfigType
}

var staticBrokerConfigs = []staticConfig{
	{"node.id", func(b *Broker) string { return strconv.Itoa(int(b.opts.NodeID)) }, kmsg.ConfigTypeInt},
	{"broker.id", func(b *Broker) string { return strconv.Itoa(int(b.opts.NodeID)) }, kmsg.ConfigTypeInt},
	{"advertised.listeners", func(b *Broker) string {
		if b.opts.AdvertisedAddr == "" {
			return ""
		}
		return "PLAINTEXT://" + b.opts.AdvertisedAddr
	}, kmsg.ConfigTypeString},
	{"auto.create.topics.enable", func(b *Broker) string { return strconv.FormatBool(b.opts.AutoCreateTopics) }, kmsg.ConfigTypeBoolean},
	{"num.partitions", func(b *Broker) string { return strconv.Itoa(int(b.opts.DefaultPartitions)) }, kmsg.ConfigTypeInt},
	{"default.replication.factor", func(*Broker) string { return "1" }, kmsg.ConfigTypeInt},
	{"offsets.topic.replication.factor", func(*Broker) string { return "1" }, kmsg.ConfigTypeShort},
	{"transaction.state.log.replication.factor", func(*Broker) string { return "1" }, kmsg.ConfigTypeShort},
	{"min.insync.replicas", func(*Broker) string { return "1" }, kmsg.ConfigTypeInt},
	{"log.dirs", func(b *Broker) string { return b.topics.dir }, kmsg.ConfigTypeString},
	{"log.retention.check.interval.ms", func(b *Broker) string { return msOf(b.opts.RetentionCheckInterval) }, kmsg.ConfigTypeLong},
	{"socket.request.max.bytes", func(*Broker) string { return strconv.Itoa(MaxFrameBytes) }, kmsg.ConfigTypeInt},
	{"connections.max.idle.ms", func(b *Broker) string { return msOf(b.opts.IdleTimeout) }, kmsg.ConfigTypeLong},
	{"authorizer.class.name", func(b *Broker) string {
		if b.authz == nil {
			return ""
		}
		return "sluice acl"
	}, kmsg.ConfigTypeString},
}

// describeBrokerConfigs lists this broker's configs (all when names is
// nil): the fixed ones, then the dynamic ones with where their value
// comes from.
func (b *Broker) describeBrokerConfigs(names []string) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, s := range staticBrokerConfigs {
		if names != nil && !contains(names, s.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly = s.name, kmsg.StringPtr(s.value(b)), true
		c.Source, c.ConfigType = kmsg.ConfigSourceStaticBrokerConfig, s.typ
		out = append(out, c)
	}
	for i := range topicConfigDefs {
		def := &topicConfigDefs[i]
		if names != nil && !contains(names, def.broker) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.ConfigType = def.broker, kmsg.ConfigType(def.typ)
		if v, src, ok := b.opts.dynamic.get(def.broker); ok {
			c.Value, c.Source = kmsg.StringPtr(v), src
		} else {
			c.Value, c.Source, c.IsDefault = kmsg.StringPtr(def.def(b.opts)), kmsg.ConfigSourceDefaultConfig, true
		}
		out = append(out, c)
	}
	return out
}

// configChange is one config of an alter request, as IncrementalAlterConfigs
// says it (AlterConfigs' are all SET, after clearing every other).
type configChange struct {
	name  string
	op    kmsg.IncrementalAlterConfigOp
	value *string
}

// applyChanges returns configs with changes applied, or why not.
func applyChanges(configs map[string]string, changes []configChange, isList func(string) bool) (map[string]string, error) {
	out := maps.Clone(configs)
	if out == nil {
		out = map[string]string{}
	}
	seen := map[string]bool{}
	for _, c := range changes {
		if seen[c.name] {
			return nil, errorf(kerr.InvalidRequest, "config %s is named more than once", c.name)
		}
		seen[c.name] = true
		switch c.op {
		case kmsg.IncrementalAlterConfigOpSet:
			if c.value == nil {
				return nil, errorf(kerr.InvalidRequest, "config %s: SET needs a value", c.name)
			}
			out[c.name] = *c.value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(out, c.name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if !isList(c.name) {
				return nil, errorf(kerr.InvalidConfig, "config %s is not a list; APPEND and SUBTRACT apply to lists", c.name)
			}
			if c.value == nil {
				return nil, errorf(kerr.InvalidRequest, "config %s: %v needs a value", c.name, c.op)
			}
			items := []string{}
			if v, ok := out[c.name]; ok && v != "" {
				items = strings.Split(v, ",")
			}
			for _, x := range strings.Split(*c.value, ",") {
				has := slices.Contains(items, x)
				if c.op == kmsg.IncrementalAlterConfigOpAppend && !has {
					items = append(items, x)
				} else if c.op == kmsg.IncrementalAlterConfigOpSubtract && has {
					items = slices.DeleteFunc(items, func(y string) bool { return y == x })
				}
			}
			out[c.name] = strings.Join(items, ",")
		default:
			return nil, errorf(kerr.InvalidRequest, "config %s: unknown operation %d", c.name, c.op)
		}
	}
	return out, nil
}

// alterTopicConfigs replaces topic name's config overrides: stored in its
// topic.json first, then in force on its partitions. It holds the topic
// set's operation lock, so a create or delete of the topic waits.
func (ts *topicSet) alterTopicConfigs(name string, changes []configChange, incremental, validateOnly bool) error {
	ts.opMu.Lock()
	defer ts.opMu.Unlock()
	t := ts.get(name)
	if t == nil {
		return errorf(kerr.UnknownTopicOrPartition, "topic %s does not exist", name)
	}
	var base map[string]string
	if incremental {
		base = t.configs()
	}
	next, err := applyChanges(base, changes, func(n string) bool { return n == "cleanup.policy" })
	if err != nil {
		return err
	}
	if err := checkConfigs(next); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	meta := t.meta
	meta.Configs = next
	if len(next) == 0 {
		meta.Configs = nil
	}
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(t.dir, "topic.json"), data); err != nil {
		return fmt.Errorf("store the configs of topic %s: %w", name, err)
	}
	t.setConfigs(meta.Configs)
	ts.applyConfigs(t)
	ts.log.Info("changed topic configs", "topic", name, "configs", meta.Configs)
	return nil
}

// applyConfigs hands t's partitions their settings as they now stand.
func (ts *topicSet) applyConfigs(t *topic) {
	cfg := t.storageConfig(ts.opts, ts.log)
	for i, p := range t.parts {
		cfg.Name = fmt.Sprintf("%s-%d", t.meta.Name, i)
		p.SetConfig(cfg)
	}
	if ts.cleanerWake != nil {
		// A topic may have become compacted, or its thresholds lower.
		ts.cleanerWake()
	}
}

// alterBrokerConfigs replaces the dynamic configs of one scope and applies
// them to every topic that does not override them.
func (b *Broker) alterBrokerConfigs(resource string, changes []configChange, incremental, validateOnly bool) error {
	perBroker := resource != ""
	if perBroker && resource != strconv.Itoa(int(b.opts.NodeID)) {
		return errorf(kerr.InvalidRequest, "broker %q: this is node %d; name it, or use \"\" for every broker's default", resource, b.opts.NodeID)
	}
	b.topics.opMu.Lock()
	defer b.topics.opMu.Unlock()
	var base map[string]string
	if incremental {
		base = b.opts.dynamic.scope(perBroker)
	}
	next, err := applyChanges(base, changes, func(n string) bool { return n == "log.cleanup.policy" })
	if err != nil {
		return err
	}
	for k, v := range next {
		if err := checkBrokerConfig(k, v); err != nil {
			return err
		}
	}
	if validateOnly {
		return nil
	}
	if len(next) == 0 {
		next = nil
	}
	if err := b.opts.dynamic.replace(perBroker, next); err != nil {
		return err
	}
	for _, t := range b.topics.list() {
		b.topics.applyConfigs(t)
	}
	b.log.Info("changed dynamic broker configs", "broker", resource, "configs", next)
	return nil
}

func handleAlterConfigs(r *request) reply {
	req := r.msg.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		changes := make([]configChange, len(rr.Configs))
		for i, c := range rr.Configs {
			changes[i] = configChange{name: c.Name, op: kmsg.IncrementalAlterConfigOpSet, value: c.Value}
			if c.Value == nil {
				changes[i].op = kmsg.IncrementalAlterConfigOpDelete
			}
		}
		sr.ErrorCode, sr.ErrorMessage = codeOf(r.alterConfigs(rr.ResourceType, rr.ResourceName, changes, false, req.ValidateOnly))
		resp.Resources = append(resp.Resources, sr)
	}
	return respond(resp)
}

func handleIncrementalAlterConfigs(r *request) reply {
	req := r.msg.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		changes := make([]configChange, len(rr.Configs))
		for i, c := range rr.Configs {
			changes[i] = configChange{name: c.Name, op: c.Op, value: c.Value}
		}
		sr.ErrorCode, sr.ErrorMessage = codeOf(r.alterConfigs(rr.ResourceType, rr.ResourceName, changes, true, req.ValidateOnly))
		resp.Resources = append(resp.Resources, sr)
	}
	return respond(resp)
}

// alterConfigs checks and applies one resource of an alter request.
func (r *request) alterConfigs(typ kmsg.ConfigResourceType, name string, changes []configChange, incremental, validateOnly bool) error {
	b := r.c.b
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if !r.authorized(opAlterConfigs, resTopic, name) {
			return errorf(kerr.TopicAuthorizationFailed, "changing the configs of topic %s needs ALTER_CONFIGS on it", name)
		}
		return b.topics.alterTopicConfigs(name, changes, incremental, validateOnly)
	case kmsg.ConfigResourceTypeBroker:
		if !r.authorizedCluster(opAlterConfigs) {
			return errorf(kerr.ClusterAuthorizationFailed, "changing broker configs needs ALTER_CONFIGS on the cluster")
		}
		return b.alterBrokerConfigs(name, changes, incremental, validateOnly)
	default:
		return errorf(kerr.InvalidRequest, "changing configs of resource type %v is not supported by the built-in broker; topics and brokers are", typ)
	}
}

// The topic-level lock for configs, which AlterConfigs replaces while
// fetches and describes read them.
var topicConfigsMu sync.RWMutex

func (t *topic) configs() map[string]string {
	topicConfigsMu.RLock()
	defer topicConfigsMu.RUnlock()
	return maps.Clone(t.meta.Configs)
}

func (t *topic) setConfigs(c map[string]string) {
	topicConfigsMu.Lock()
	t.meta.Configs = c
	topicConfigsMu.Unlock()
}
