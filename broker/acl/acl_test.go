package acl

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	topic   = kmsg.ACLResourceTypeTopic
	group   = kmsg.ACLResourceTypeGroup
	cluster = kmsg.ACLResourceTypeCluster
	literal = kmsg.ACLResourcePatternTypeLiteral
	prefix  = kmsg.ACLResourcePatternTypePrefixed
	allow   = kmsg.ACLPermissionTypeAllow
	deny    = kmsg.ACLPermissionTypeDeny

	read      = kmsg.ACLOperationRead
	write     = kmsg.ACLOperationWrite
	describe  = kmsg.ACLOperationDescribe
	all       = kmsg.ACLOperationAll
	alterCfg  = kmsg.ACLOperationAlterConfigs
	descCfg   = kmsg.ACLOperationDescribeConfigs
	deleteOp  = kmsg.ACLOperationDelete
	createOp  = kmsg.ACLOperationCreate
	idemWrite = kmsg.ACLOperationIdempotentWrite
)

func bind(rt ResourceType, name string, pt PatternType, principal, host string, op Operation, perm Permission) Binding {
	return Binding{ResourceType: rt, ResourceName: name, PatternType: pt, Principal: principal, Host: host, Operation: op, Permission: perm}
}

func open(t *testing.T, dir string, opts Options, bs ...Binding) *Authorizer {
	t.Helper()
	a, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range a.Create(bs) {
		if err != nil {
			t.Fatalf("create %v: %v", bs[i], err)
		}
	}
	return a
}

// The decisions of Kafka's StandardAuthorizer, case by case.
func TestAuthorize(t *testing.T) {
	a := open(t, t.TempDir(), Options{SuperUsers: []string{"User:admin"}},
		bind(topic, "orders", literal, "User:alice", "*", read, allow),
		bind(topic, "orders", literal, "User:bob", "*", write, allow),
		bind(topic, "orders", literal, "User:bob", "10.0.0.9", write, deny),
		bind(topic, "logs-", prefix, "User:carol", "*", all, allow),
		bind(topic, "logs-secret", literal, "User:carol", "*", read, deny),
		bind(topic, "*", literal, "User:*", "*", describe, allow),
		bind(topic, "cfg", literal, "User:dave", "*", alterCfg, allow),
		bind(group, "g", literal, "User:alice", "127.0.0.1", read, allow),
		bind(topic, "denied", literal, "User:*", "*", all, deny),
		bind(topic, "denied", literal, "User:alice", "*", all, allow),
	)
	cases := []struct {
		principal, host string
		op              Operation
		rt              ResourceType
		name            string
		want            bool
	}{
		{"User:alice", "1.2.3.4", read, topic, "orders", true},
		{"User:alice", "1.2.3.4", write, topic, "orders", false},             // not granted
		{"User:alice", "1.2.3.4", describe, topic, "orders", true},           // implied by READ (and by the wildcard)
		{"User:bob", "1.2.3.4", write, topic, "orders", true},                // allowed
		{"User:bob", "10.0.0.9", write, topic, "orders", false},              // deny from that host wins
		{"User:bob", "10.0.0.9", describe, topic, "orders", true},            // a DENY of WRITE does not deny DESCRIBE
		{"User:carol", "h", write, topic, "logs-app", true},                  // prefixed ALL
		{"User:carol", "h", read, topic, "logs-secret", false},               // literal deny over prefixed allow
		{"User:carol", "h", write, topic, "logs-secret", true},               // the deny names READ only
		{"User:carol", "h", read, topic, "logs", false},                      // shorter than the prefix
		{"User:eve", "h", describe, topic, "anything", true},                 // wildcard resource and principal
		{"User:eve", "h", read, topic, "anything", false},                    // has ACLs (the wildcard): deny
		{"User:dave", "h", descCfg, topic, "cfg", true},                      // implied by ALTER_CONFIGS
		{"User:dave", "h", describe, topic, "cfg", true},                     // the wildcard
		{"User:alice", "127.0.0.1", read, group, "g", true},                  // host matches
		{"User:alice", "127.0.0.2", read, group, "g", false},                 // host does not
		{"User:alice", "127.0.0.1", read, group, "other", false},             // no ACL: the default is deny
		{"User:admin", "h", deleteOp, cluster, ClusterName, true},            // super user
		{"User:admin", "h", read, topic, "denied", true},                     // super users bypass DENY
		{"User:alice", "h", read, topic, "denied", false},                    // DENY for User:* wins over her ALLOW
		{"User:alice", "h", kmsg.ACLOperationAlter, topic, "orders", false},  // ALTER not implied by READ
		{"User:alice", "h", read, kmsg.ACLResourceType(99), "orders", false}, // unknown type
		{"User:alice", "h", read, kmsg.ACLResourceType(-3), "orders", false}, // negative type
		{"ANONYMOUS", "h", createOp, kmsg.ACLResourceTypeTransactionalId, "t", false},
	}
	for _, c := range cases {
		if got := a.Authorize(c.principal, c.host, c.op, c.rt, c.name); got != c.want {
			t.Errorf("%s from %s %s %s %q: got %v, want %v", c.principal, c.host, c.op, c.rt, c.name, got, c.want)
		}
	}
}

// allow.everyone.if.no.acl.found: a resource no binding names is open, one
// any binding names is not.
func TestAllowIfNoACL(t *testing.T) {
	a := open(t, t.TempDir(), Options{AllowIfNoACL: true},
		bind(topic, "closed", literal, "User:alice", "*", read, allow))
	if !a.Authorize("User:bob", "h", write, topic, "open") {
		t.Error("a topic without ACLs is closed with AllowIfNoACL")
	}
	if a.Authorize("User:bob", "h", read, topic, "closed") {
		t.Error("bob may read a topic whose ACLs name only alice")
	}
}

func TestAuthorizeAny(t *testing.T) {
	a := open(t, t.TempDir(), Options{},
		bind(topic, "a", literal, "User:alice", "*", write, allow),
		bind(topic, "b-", prefix, "User:bob", "*", write, allow),
		bind(topic, "b", prefix, "User:bob", "*", write, deny), // covers b-
		bind(topic, "c", literal, "User:carol", "*", all, allow),
		bind(topic, "*", literal, "User:carol", "*", write, deny),
		bind(cluster, ClusterName, literal, "User:dave", "*", idemWrite, allow),
	)
	for _, c := range []struct {
		principal string
		op        Operation
		rt        ResourceType
		want      bool
	}{
		{"User:alice", write, topic, true},
		{"User:bob", write, topic, false},   // the prefixed deny covers the allow
		{"User:carol", write, topic, false}, // wildcard deny
		{"User:dave", write, topic, false},
		{"User:dave", idemWrite, cluster, true},
		{"User:alice", read, topic, false},
	} {
		if got := a.AuthorizeAny(c.principal, "h", c.op, c.rt); got != c.want {
			t.Errorf("%s %s any %s: got %v, want %v", c.principal, c.op, c.rt, got, c.want)
		}
	}
}

// Filters with ANY and MATCH select what Kafka's do.
func TestFilter(t *testing.T) {
	lit := bind(topic, "orders", literal, "User:alice", "*", read, allow)
	wild := bind(topic, "*", literal, "User:alice", "*", read, allow)
	pre := bind(topic, "ord", prefix, "User:alice", "*", read, allow)
	other := bind(topic, "x", prefix, "User:alice", "*", read, allow)
	grp := bind(group, "orders", literal, "User:alice", "*", read, allow)
	name := func(s string) *string { return &s }
	anyF := Filter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
	cases := []struct {
		f    func(f *Filter)
		want []bool // lit, wild, pre, other, grp
	}{
		{func(f *Filter) {}, []bool{true, true, true, true, true}},
		{func(f *Filter) { f.ResourceType = topic }, []bool{true, true, true, true, false}},
		{func(f *Filter) { f.ResourceName = name("orders") }, []bool{true, false, false, false, true}},
		{func(f *Filter) { f.ResourceName, f.PatternType = name("orders"), kmsg.ACLResourcePatternTypeMatch },
			[]bool{true, true, true, false, true}},
		{func(f *Filter) { f.ResourceName, f.PatternType = name("ord"), prefix }, []bool{false, false, true, false, false}},
		{func(f *Filter) { f.PatternType = literal }, []bool{true, true, false, false, true}},
		{func(f *Filter) { f.Principal = name("User:bob") }, []bool{false, false, false, false, false}},
		{func(f *Filter) { f.Operation = write }, []bool{false, false, false, false, false}},
		{func(f *Filter) { f.Permission = deny }, []bool{false, false, false, false, false}},
		{func(f *Filter) { f.Host = name("*") }, []bool{true, true, true, true, true}},
	}
	for i, c := range cases {
		f := anyF
		c.f(&f)
		for j, b := range []Binding{lit, wild, pre, other, grp} {
			if got := f.Matches(b); got != c.want[j] {
				t.Errorf("case %d, binding %v: matches %v, want %v", i, b, got, c.want[j])
			}
		}
	}
	if err := ValidateFilter(Filter{}); err == nil {
		t.Error("a filter of UNKNOWN values was accepted")
	}
}

// Bindings survive a reopen; deletes too. A creation that repeats a binding
// is a success and stores it once; invalid ones are refused one by one.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, Options{})
	good := bind(topic, "orders", literal, "User:alice", "*", read, allow)
	errs := a.Create([]Binding{good, good,
		bind(topic, "", literal, "User:alice", "*", read, allow),
		bind(topic, "x", kmsg.ACLResourcePatternTypeMatch, "User:alice", "*", read, allow),
		bind(topic, "x", literal, "alice", "*", read, allow),
		bind(kmsg.ACLResourceTypeAny, "x", literal, "User:alice", "*", read, allow),
		bind(topic, "x", literal, "User:alice", "*", kmsg.ACLOperationAny, allow),
		bind(topic, "x", literal, "User:alice", "*", read, kmsg.ACLPermissionTypeAny),
	})
	for i, err := range errs {
		var inv *InvalidError
		if (i < 2) != (err == nil) || (i >= 2 && !errors.As(err, &inv)) {
			t.Errorf("creation %d: %v", i, err)
		}
	}
	a.Create([]Binding{bind(group, "g", prefix, "User:bob", "10.1.1.1", deleteOp, deny)})
	b := open(t, dir, Options{})
	got, _ := b.Describe(Filter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny})
	if len(got) != 2 || got[0] != good || got[1].Host != "10.1.1.1" {
		t.Fatalf("after reopening: %v", got)
	}
	if !b.Authorize("User:alice", "h", read, topic, "orders") {
		t.Fatal("a reopened authorizer does not apply the stored binding")
	}
	matched, errs := b.Delete([]Filter{{ResourceType: topic, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, {}})
	if len(matched[0]) != 1 || errs[0] != nil || errs[1] == nil {
		t.Fatalf("delete: %v %v", matched, errs)
	}
	c := open(t, dir, Options{})
	if c.Authorize("User:alice", "h", read, topic, "orders") {
		t.Fatal("a deleted binding came back after reopening")
	}
}

func TestLimitAndBadFile(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, Options{})
	bs := make([]Binding, MaxBindings+1)
	for i := range bs {
		bs[i] = bind(topic, "t"+string(rune('a'+i%26))+string(rune(i)), literal, "User:alice", "*", read, allow)
	}
	errs := a.Create(bs)
	if errs[len(errs)-1] != ErrTooMany || errs[0] != nil {
		t.Fatalf("creating %d bindings: first %v, last %v", len(bs), errs[0], errs[len(errs)-1])
	}
	filters := make([]Filter, MaxBindings+1)
	for i := range filters {
		filters[i] = Filter{ResourceType: group, PatternType: kmsg.ACLResourcePatternTypeAny,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
	}
	if _, errs := a.Delete(filters); errs[0] != nil || errs[MaxBindings] == nil {
		t.Fatalf("deleting with %d filters: first %v, last %v", len(filters), errs[0], errs[MaxBindings])
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(`{"bindings":[{"resource_type":"TOPIC"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("a file with an invalid binding was loaded")
	}
	if _, err := Open(t.TempDir(), Options{SuperUsers: []string{"admin"}}); err == nil {
		t.Fatal("a super user without a principal type was accepted")
	}
}

// A check allocates nothing: it runs for every produce and fetch.
func TestAuthorizeAllocs(t *testing.T) {
	a := open(t, t.TempDir(), Options{},
		bind(topic, "logs-", prefix, "User:carol", "*", write, allow),
		bind(topic, "orders", literal, "User:carol", "*", write, allow))
	if n := testing.AllocsPerRun(100, func() { a.Authorize("User:carol", "127.0.0.1", write, topic, "logs-app") }); n != 0 {
		t.Fatalf("Authorize allocates %v times", n)
	}
}

func BenchmarkAuthorize(b *testing.B) {
	a, _ := Open(b.TempDir(), Options{})
	var bs []Binding
	for i := range 1000 {
		bs = append(bs, bind(topic, "topic-"+string(rune('a'+i%26))+string(rune('a'+i/26)), literal, "User:carol", "*", write, allow))
	}
	bs = append(bs, bind(topic, "logs-", prefix, "User:carol", "*", write, allow))
	a.Create(bs)
	for b.Loop() {
		a.Authorize("User:carol", "127.0.0.1", write, topic, "logs-app")
	}
}
