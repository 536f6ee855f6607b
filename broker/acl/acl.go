// Package acl is the built-in broker's authorizer: Kafka's ACL model and
// rules, so that kafka-acls.sh, kadm and librdkafka manage it as they manage
// Kafka's, and a set of ACLs means here what it means on a Kafka cluster.
//
// A binding is a resource pattern (type, name, LITERAL or PREFIXED; the
// LITERAL name "*" matches every name) and an entry (principal "User:NAME"
// or the wildcard "User:*", host IP or "*", operation, ALLOW or DENY). A
// request is decided as Kafka's StandardAuthorizer decides it:
//
//   - super users are allowed everything;
//   - a matching DENY wins over any ALLOW; a DENY matches its operation
//     exactly (or ALL);
//   - an ALLOW matches its operation, ALL, or an operation it implies:
//     DESCRIBE by READ, WRITE, DELETE and ALTER, DESCRIBE_CONFIGS by
//     ALTER_CONFIGS;
//   - with no binding at all on the resource (whoever it names), the answer
//     is the no-ACL default: deny, unless AllowIfNoACL (Kafka's
//     allow.everyone.if.no.acl.found).
//
// Bindings are kept in one JSON file, replaced whole and fsynced on every
// change (internal/durable), and held in memory as an immutable index that
// a change swaps atomically: a check takes no lock and allocates nothing.
package acl

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/durable"
)

// The wire enums are kmsg's: their codes are Kafka's.
type (
	ResourceType = kmsg.ACLResourceType
	PatternType  = kmsg.ACLResourcePatternType
	Operation    = kmsg.ACLOperation
	Permission   = kmsg.ACLPermissionType
)

const (
	// ClusterName is the name of the one CLUSTER resource, as in Kafka.
	ClusterName = "kafka-cluster"
	// Wildcard is the LITERAL resource name matching every name, and the
	// host matching every host.
	Wildcard = "*"
	// WildcardPrincipal matches every principal of type User.
	WildcardPrincipal = "User:*"
)

const (
	// MaxBindings bounds the bindings the broker keeps. Every change
	// rewrites the whole file and every check may look at each binding of
	// a resource, so the set must stay small enough for both to be cheap;
	// ten thousand is far beyond what a single-node broker's users need
	// (Kafka caps one ACL request at the same number).
	MaxBindings = 10000
	// MaxFieldBytes bounds a resource name, principal or host. With
	// MaxBindings it caps the file (and memory) at tens of megabytes, and
	// no real name comes near it (topic names stop at 249 bytes).
	MaxFieldBytes = 1024
)

// FileName is the file the bindings are kept in, in the broker's data
// directory.
const FileName = "acls.json"

// Binding is one ACL.
type Binding struct {
	ResourceType ResourceType
	ResourceName string
	PatternType  PatternType
	Principal    string
	Host         string
	Operation    Operation
	Permission   Permission
}

func (b Binding) String() string {
	return fmt.Sprintf("%s %s on %s:%s:%s from host %s: %s", b.Principal, b.Permission, b.ResourceType, b.PatternType,
		b.ResourceName, b.Host, b.Operation)
}

// Filter selects bindings, as Kafka's AclBindingFilter: ANY matches any
// value of an enum, a nil string any string, and pattern type MATCH selects
// the bindings that would apply to the resource named (its LITERAL name,
// the LITERAL "*" and every PREFIXED pattern that is a prefix of it).
type Filter struct {
	ResourceType ResourceType
	ResourceName *string
	PatternType  PatternType
	Principal    *string
	Host         *string
	Operation    Operation
	Permission   Permission
}

// InvalidError is a binding or filter that Kafka would refuse with
// INVALID_REQUEST.
type InvalidError struct{ msg string }

func (e *InvalidError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &InvalidError{msg: fmt.Sprintf(format, args...)}
}

func validResourceType(t ResourceType) bool {
	return t >= kmsg.ACLResourceTypeTopic && t <= kmsg.ACLResourceTypeUser
}
func validOperation(o Operation) bool {
	return o >= kmsg.ACLOperationAll && o <= kmsg.ACLOperationDescribeTokens
}

// Validate checks a binding for creation, with Kafka's rules (a concrete
// resource type and operation, LITERAL or PREFIXED, ALLOW or DENY, a
// non-empty name, a principal "Type:name") plus the broker's size bounds.
func Validate(b Binding) error {
	switch {
	case !validResourceType(b.ResourceType):
		return invalid("invalid resource type %s: use TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN or USER", b.ResourceType)
	case b.PatternType != kmsg.ACLResourcePatternTypeLiteral && b.PatternType != kmsg.ACLResourcePatternTypePrefixed:
		return invalid("invalid pattern type %s: an ACL is LITERAL or PREFIXED", b.PatternType)
	case !validOperation(b.Operation):
		return invalid("invalid operation %s: an ACL names one operation or ALL", b.Operation)
	case b.Permission != kmsg.ACLPermissionTypeAllow && b.Permission != kmsg.ACLPermissionTypeDeny:
		return invalid("invalid permission %s: an ACL is ALLOW or DENY", b.Permission)
	case b.ResourceName == "":
		return invalid("resource name should not be empty")
	case b.Host == "":
		return invalid("host should not be empty: use * for any host")
	}
	if typ, name, ok := strings.Cut(b.Principal, ":"); !ok || typ == "" || name == "" {
		return invalid("could not parse principal %q: write it Type:name, e.g. User:alice or User:*", b.Principal)
	}
	for _, f := range []string{b.ResourceName, b.Principal, b.Host} {
		if len(f) > MaxFieldBytes {
			return invalid("a resource name, principal or host of %d bytes is over the limit of %d", len(f), MaxFieldBytes)
		}
	}
	return nil
}

// ValidateFilter refuses filters with an unknown field, as Kafka does.
func ValidateFilter(f Filter) error {
	switch {
	case f.ResourceType != kmsg.ACLResourceTypeAny && !validResourceType(f.ResourceType):
		return invalid("unknown resource type %d in filter", int8(f.ResourceType))
	case f.PatternType < kmsg.ACLResourcePatternTypeAny || f.PatternType > kmsg.ACLResourcePatternTypePrefixed:
		return invalid("unknown pattern type %d in filter", int8(f.PatternType))
	case f.Operation != kmsg.ACLOperationAny && !validOperation(f.Operation):
		return invalid("unknown operation %d in filter", int8(f.Operation))
	case f.Permission < kmsg.ACLPermissionTypeAny || f.Permission > kmsg.ACLPermissionTypeAllow:
		return invalid("unknown permission %d in filter", int8(f.Permission))
	}
	return nil
}

// Matches reports whether the filter selects b (Kafka's
// ResourcePatternFilter and AccessControlEntryFilter rules).
func (f Filter) Matches(b Binding) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != b.ResourceType {
		return false
	}
	switch f.PatternType {
	case kmsg.ACLResourcePatternTypeAny, kmsg.ACLResourcePatternTypeMatch:
	default:
		if f.PatternType != b.PatternType {
			return false
		}
	}
	if f.ResourceName != nil {
		name := *f.ResourceName
		switch {
		case f.PatternType == kmsg.ACLResourcePatternTypeAny || f.PatternType == b.PatternType:
			if name != b.ResourceName {
				return false
			}
		case b.PatternType == kmsg.ACLResourcePatternTypeLiteral:
			if name != b.ResourceName && b.ResourceName != Wildcard {
				return false
			}
		case b.PatternType == kmsg.ACLResourcePatternTypePrefixed:
			if !strings.HasPrefix(name, b.ResourceName) {
				return false
			}
		default:
			return false
		}
	}
	return (f.Principal == nil || *f.Principal == b.Principal) &&
		(f.Host == nil || *f.Host == b.Host) &&
		(f.Operation == kmsg.ACLOperationAny || f.Operation == b.Operation) &&
		(f.Permission == kmsg.ACLPermissionTypeAny || f.Permission == b.Permission)
}

// Options configure an Authorizer.
type Options struct {
	// SuperUsers are principals ("User:admin") allowed everything.
	SuperUsers []string
	// AllowIfNoACL allows an operation on a resource no binding names, as
	// Kafka's allow.everyone.if.no.acl.found; off by default.
	AllowIfNoACL bool
}

// Authorizer decides requests and keeps the bindings.
type Authorizer struct {
	path         string
	super        map[string]struct{}
	allowIfNoACL bool
	mu           sync.Mutex // serialises changes and their file writes
	cur          atomic.Pointer[index]
}

// Open loads the bindings kept in dir (none if the file does not exist).
func Open(dir string, opts Options) (*Authorizer, error) {
	a := &Authorizer{path: dir + string(os.PathSeparator) + FileName, super: map[string]struct{}{},
		allowIfNoACL: opts.AllowIfNoACL}
	for _, p := range opts.SuperUsers {
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return nil, fmt.Errorf("super user %q: write principals Type:name, e.g. User:admin", p)
		}
		a.super[p] = struct{}{}
	}
	bindings, err := load(a.path)
	if err != nil {
		return nil, err
	}
	a.cur.Store(newIndex(bindings))
	return a, nil
}

// fileBinding is a binding as kept in the file: enums by name, so the file
// can be read (and, with the broker stopped, fixed) by a person.
type fileBinding struct {
	ResourceType string `json:"resource_type"`
	PatternType  string `json:"pattern_type"`
	ResourceName string `json:"resource_name"`
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Operation    string `json:"operation"`
	Permission   string `json:"permission"`
}

type file struct {
	Bindings []fileBinding `json:"bindings"`
}

func load(path string) ([]Binding, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ACLs: %w", err)
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("ACL file %s is not valid JSON (%v): restore it, or remove it to start with no ACLs", path, err)
	}
	if len(f.Bindings) > MaxBindings {
		return nil, fmt.Errorf("ACL file %s holds %d bindings, over the limit of %d: remove some", path, len(f.Bindings), MaxBindings)
	}
	out := make([]Binding, 0, len(f.Bindings))
	for i, fb := range f.Bindings {
		var b Binding
		var errs [4]error
		b.ResourceType, errs[0] = kmsg.ParseACLResourceType(fb.ResourceType)
		b.PatternType, errs[1] = kmsg.ParseACLResourcePatternType(fb.PatternType)
		b.Operation, errs[2] = kmsg.ParseACLOperation(fb.Operation)
		b.Permission, errs[3] = kmsg.ParseACLPermissionType(fb.Permission)
		b.ResourceName, b.Principal, b.Host = fb.ResourceName, fb.Principal, fb.Host
		err := errors.Join(errs[:]...)
		if err == nil {
			err = Validate(b)
		}
		if err != nil {
			return nil, fmt.Errorf("ACL file %s, binding %d: %v: fix or remove it", path, i+1, err)
		}
		out = append(out, b)
	}
	return normalize(out), nil
}

func (a *Authorizer) store(bindings []Binding) error {
	f := file{Bindings: make([]fileBinding, len(bindings))}
	for i, b := range bindings {
		f.Bindings[i] = fileBinding{ResourceType: b.ResourceType.String(), PatternType: b.PatternType.String(),
			ResourceName: b.ResourceName, Principal: b.Principal, Host: b.Host,
			Operation: b.Operation.String(), Permission: b.Permission.String()}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(a.path, append(data, '\n')); err != nil {
		return fmt.Errorf("write ACLs: %w", err)
	}
	return nil
}

func compare(x, y Binding) int {
	return cmp.Or(cmp.Compare(x.ResourceType, y.ResourceType), strings.Compare(x.ResourceName, y.ResourceName),
		cmp.Compare(x.PatternType, y.PatternType), strings.Compare(x.Principal, y.Principal),
		strings.Compare(x.Host, y.Host), cmp.Compare(x.Operation, y.Operation), cmp.Compare(x.Permission, y.Permission))
}

// normalize sorts bindings and drops duplicates.
func normalize(bs []Binding) []Binding {
	slices.SortFunc(bs, compare)
	return slices.Compact(bs)
}

// ErrTooMany refuses a creation that would keep more than MaxBindings.
var ErrTooMany = fmt.Errorf("the broker keeps at most %d ACL bindings: delete some first", MaxBindings)

// Create adds bindings, answering one error (nil for success) per binding.
// A binding that exists already is a success, as in Kafka. All that pass
// are written in one durable step before Create returns.
func (a *Authorizer) Create(bindings []Binding) []error {
	errs := make([]error, len(bindings))
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.cur.Load().bindings
	next := slices.Clone(cur)
	added := false
	for i, b := range bindings {
		if errs[i] = Validate(b); errs[i] != nil {
			continue
		}
		if _, found := slices.BinarySearchFunc(cur, b, compare); found {
			continue
		}
		if len(next) >= MaxBindings {
			errs[i] = ErrTooMany
			continue
		}
		next = append(next, b)
		added = true
	}
	if !added {
		return errs
	}
	next = normalize(next)
	if err := a.store(next); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	a.cur.Store(newIndex(next))
	return errs
}

// Delete removes the bindings each filter matches, answering per filter
// what it matched (a binding matched by two filters is listed by both) or
// why the filter was refused.
func (a *Authorizer) Delete(filters []Filter) ([][]Binding, []error) {
	matched := make([][]Binding, len(filters))
	errs := make([]error, len(filters))
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.cur.Load().bindings
	gone := make([]bool, len(cur))
	any := false
	for i, f := range filters {
		if i >= MaxBindings {
			// Each filter is matched against every binding: bound the
			// work one request can ask for, as Kafka bounds an ACL
			// request's changes.
			errs[i] = invalid("a DeleteAcls request takes at most %d filters", MaxBindings)
			continue
		}
		if errs[i] = ValidateFilter(f); errs[i] != nil {
			continue
		}
		for j, b := range cur {
			if f.Matches(b) {
				matched[i] = append(matched[i], b)
				gone[j], any = true, true
			}
		}
	}
	if !any {
		return matched, errs
	}
	next := make([]Binding, 0, len(cur))
	for j, b := range cur {
		if !gone[j] {
			next = append(next, b)
		}
	}
	if err := a.store(next); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i], matched[i] = err, nil
			}
		}
		return matched, errs
	}
	a.cur.Store(newIndex(next))
	return matched, errs
}

// Describe lists the bindings the filter matches, in a stable order.
func (a *Authorizer) Describe(f Filter) ([]Binding, error) {
	if err := ValidateFilter(f); err != nil {
		return nil, err
	}
	var out []Binding
	for _, b := range a.cur.Load().bindings {
		if f.Matches(b) {
			out = append(out, b)
		}
	}
	return out, nil
}

// IsSuperUser reports whether principal bypasses the ACLs.
func (a *Authorizer) IsSuperUser(principal string) bool {
	_, ok := a.super[principal]
	return ok
}
