package acl

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// index is an immutable snapshot of the bindings, arranged for checks: per
// resource type, LITERAL entries by name ("*" among them) and PREFIXED
// entries by prefix, with the distinct prefix lengths so a check looks up
// each prefix of the name at most once instead of scanning every pattern.
type index struct {
	bindings []Binding // sorted, no duplicates: what the file holds
	types    [kmsg.ACLResourceTypeUser + 1]typeIndex
}

type typeIndex struct {
	literal    map[string][]entry
	prefixed   map[string][]entry
	prefixLens []int // ascending
	all        []Binding
}

// entry is a binding's access-control part.
type entry struct {
	principal, host string
	op              Operation
	allow           bool
}

func newIndex(bindings []Binding) *index {
	ix := &index{bindings: bindings}
	for _, b := range bindings {
		t := &ix.types[b.ResourceType]
		e := entry{principal: b.Principal, host: b.Host, op: b.Operation, allow: b.Permission == kmsg.ACLPermissionTypeAllow}
		t.all = append(t.all, b)
		if b.PatternType == kmsg.ACLResourcePatternTypeLiteral {
			if t.literal == nil {
				t.literal = map[string][]entry{}
			}
			t.literal[b.ResourceName] = append(t.literal[b.ResourceName], e)
			continue
		}
		if t.prefixed == nil {
			t.prefixed = map[string][]entry{}
		}
		if len(t.prefixed[b.ResourceName]) == 0 && !slices.Contains(t.prefixLens, len(b.ResourceName)) {
			t.prefixLens = append(t.prefixLens, len(b.ResourceName))
		}
		t.prefixed[b.ResourceName] = append(t.prefixed[b.ResourceName], e)
	}
	for i := range ix.types {
		slices.Sort(ix.types[i].prefixLens)
	}
	return ix
}

// decision accumulates what the entries on a resource say.
type decision struct {
	found, allow, deny bool
}

// scan applies entries to a request, as Kafka's StandardAuthorizer does:
// every entry marks the resource as having ACLs; one that matches the
// principal (or User:*), the host (or *) and the operation allows or
// denies.
func (d *decision) scan(entries []entry, principal, host string, op Operation) {
	for i := range entries {
		e := &entries[i]
		d.found = true
		if e.principal != principal && e.principal != WildcardPrincipal {
			continue
		}
		if e.host != Wildcard && e.host != host {
			continue
		}
		if !e.allow {
			if e.op == op || e.op == kmsg.ACLOperationAll {
				d.deny = true
				return
			}
			continue
		}
		if e.op == op || e.op == kmsg.ACLOperationAll || implies(e.op, op) {
			d.allow = true
		}
	}
}

// implies reports whether allowing have also allows want: READ, WRITE,
// DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
// A DENY implies nothing (denying READ does not deny DESCRIBE).
func implies(have, want Operation) bool {
	switch want {
	case kmsg.ACLOperationDescribe:
		switch have {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return true
		}
	case kmsg.ACLOperationDescribeConfigs:
		return have == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// Authorize reports whether principal, connected from host (an IP address
// as Go prints it), may do op on the resource named. It takes no lock and
// allocates nothing.
func (a *Authorizer) Authorize(principal, host string, op Operation, rt ResourceType, name string) bool {
	if _, ok := a.super[principal]; ok {
		return true
	}
	ix := a.cur.Load()
	if rt < 0 || int(rt) >= len(ix.types) {
		return false
	}
	t := &ix.types[rt]
	var d decision
	d.scan(t.literal[name], principal, host, op)
	if !d.deny && name != Wildcard {
		d.scan(t.literal[Wildcard], principal, host, op)
	}
	for _, n := range t.prefixLens {
		if d.deny || n > len(name) {
			break
		}
		d.scan(t.prefixed[name[:n]], principal, host, op)
	}
	switch {
	case d.deny:
		return false
	case d.allow:
		return true
	case !d.found:
		return a.allowIfNoACL
	}
	return false
}

// AuthorizeAny reports whether principal may do op on at least one
// resource of the type, as Kafka's authorizeByResourceType: an idempotent
// producer without a transactional id needs WRITE on some topic. An ALLOW
// counts unless a DENY covers its whole pattern (the same LITERAL name, a
// PREFIXED pattern that is a prefix of it, or the LITERAL "*"). Operations
// are matched exactly (or ALL), without implication.
func (a *Authorizer) AuthorizeAny(principal, host string, op Operation, rt ResourceType) bool {
	if _, ok := a.super[principal]; ok {
		return true
	}
	ix := a.cur.Load()
	if rt < 0 || int(rt) >= len(ix.types) {
		return false
	}
	all := ix.types[rt].all
	if len(all) == 0 {
		return a.allowIfNoACL
	}
	applies := func(b *Binding) bool {
		return (b.Principal == principal || b.Principal == WildcardPrincipal) &&
			(b.Host == Wildcard || b.Host == host) &&
			(b.Operation == op || b.Operation == kmsg.ACLOperationAll)
	}
	denied := func(allow *Binding) bool {
		for i := range all {
			d := &all[i]
			if d.Permission != kmsg.ACLPermissionTypeDeny || !applies(d) {
				continue
			}
			switch {
			case d.PatternType == kmsg.ACLResourcePatternTypeLiteral && d.ResourceName == Wildcard:
				return true
			case d.PatternType == kmsg.ACLResourcePatternTypeLiteral:
				if allow.PatternType == kmsg.ACLResourcePatternTypeLiteral && allow.ResourceName == d.ResourceName {
					return true
				}
			case len(d.ResourceName) <= len(allow.ResourceName) && allow.ResourceName[:len(d.ResourceName)] == d.ResourceName:
				return true
			}
		}
		return false
	}
	for i := range all {
		b := &all[i]
		if b.Permission == kmsg.ACLPermissionTypeAllow && applies(b) && !denied(b) {
			return true
		}
	}
	return false
}
