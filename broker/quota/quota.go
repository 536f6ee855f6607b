// Package quota keeps the broker's client quotas (Kafka's
// DescribeClientQuotas/AlterClientQuotas, KIP-546) and measures clients
// against them (KIP-13, KIP-219): which quota applies to a (user,
// client-id) pair, with Kafka's precedence, and a sliding-window rate per
// sensor that says how long a client over its quota is throttled.
//
// The quotas are one JSON file in the data directory, replaced whole
// (durable.WriteFile) on every change; readers use an immutable snapshot
// swapped with an atomic pointer, so resolving a quota on the produce and
// fetch paths takes no lock.
package quota

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/internal/durable"
)

// Entity types, as Kafka names them.
const (
	User     = "user"
	ClientID = "client-id"
	IP       = "ip"
)

// Quota keys, as Kafka names them.
const (
	ProducerByteRate       = "producer_byte_rate"
	ConsumerByteRate       = "consumer_byte_rate"
	RequestPercentage      = "request_percentage"
	ControllerMutationRate = "controller_mutation_rate"
	ConnectionCreationRate = "connection_creation_rate"
)

// File is the quotas' file in the data directory.
const File = "client-quotas.json"

// MaxEntities bounds the entities with quotas. Kafka has no such limit, but
// describing is a walk over all of them and each one is kept in memory and
// in the file rewritten on every change; ten thousand is far beyond what an
// operator sets by hand (quotas go on users and client ids, defaults cover
// the rest) and keeps a rewrite under a megabyte.
const MaxEntities = 10000

// keyKind is how a quota key's value must look (Kafka's ConfigDef types).
type keyKind int

const (
	kindLong keyKind = iota
	kindDouble
	kindInt
)

// clientKeys are the keys of user and client-id entities; ipKeys those of
// ip entities (Kafka's QuotaConfigs.userConfigs/clientConfigs/ipConfigs).
var (
	clientKeys = map[string]keyKind{
		ProducerByteRate:       kindLong,
		ConsumerByteRate:       kindLong,
		RequestPercentage:      kindDouble,
		ControllerMutationRate: kindDouble,
	}
	ipKeys = map[string]keyKind{ConnectionCreationRate: kindInt}
)

// Part is one entity type's part of an entity.
type Part struct {
	// Present says the entity names this type.
	Present bool
	// Default is Kafka's null name: the default for every name of the type.
	Default bool
	Name    string
}

// Named is a part naming name; DefaultPart the default one.
func Named(name string) Part { return Part{Present: true, Name: name} }

// DefaultPart is the default entity of a type (a null name on the wire).
var DefaultPart = Part{Present: true, Default: true}

func (p Part) String() string {
	if p.Default {
		return "<default>"
	}
	return p.Name
}

// Entity is what quotas are set on: a user, a client id, both, or an IP.
type Entity struct {
	User, ClientID, IP Part
}

// EntityPart is one type and name of an entity as requests and responses
// carry it; a nil Name is the default.
type EntityPart struct {
	Type string  `json:"type"`
	Name *string `json:"name"`
}

// Parts lists e as the protocol does, user before client-id.
func (e Entity) Parts() []EntityPart {
	var out []EntityPart
	add := func(typ string, p Part) {
		if !p.Present {
			return
		}
		ep := EntityPart{Type: typ}
		if !p.Default {
			name := p.Name
			ep.Name = &name
		}
		out = append(out, ep)
	}
	add(User, e.User)
	add(ClientID, e.ClientID)
	add(IP, e.IP)
	return out
}

func (e Entity) String() string {
	var parts []string
	for _, p := range e.Parts() {
		name := "<default>"
		if p.Name != nil {
			name = *p.Name
		}
		parts = append(parts, p.Type+"="+name)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// part returns the part of type typ.
func (e *Entity) part(typ string) *Part {
	switch typ {
	case User:
		return &e.User
	case ClientID:
		return &e.ClientID
	case IP:
		return &e.IP
	}
	return nil
}

// size is the number of types e names.
func (e Entity) size() int {
	n := 0
	for _, p := range []Part{e.User, e.ClientID, e.IP} {
		if p.Present {
			n++
		}
	}
	return n
}

// Error is a refusal with the Kafka code to answer.
type Error struct {
	Code    *kerr.Error
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalid(format string, args ...any) *Error {
	return &Error{Code: kerr.InvalidRequest, Message: fmt.Sprintf(format, args...)}
}

// ParseEntity checks parts as Kafka's controller does and returns the
// entity they name.
func ParseEntity(parts []EntityPart) (Entity, error) {
	var e Entity
	if len(parts) == 0 {
		return e, invalid("Invalid empty client quota entity")
	}
	for _, ep := range parts {
		p := e.part(ep.Type)
		if p == nil {
			return e, invalid("Unhandled client quota entity type: %s", ep.Type)
		}
		if p.Present {
			return e, invalid("Invalid empty client quota entity, duplicate entity entry %s", ep.Type)
		}
		if ep.Name == nil {
			*p = DefaultPart
			continue
		}
		if *ep.Name == "" {
			return e, invalid("Empty %s not supported", ep.Type)
		}
		*p = Named(*ep.Name)
	}
	if e.IP.Present {
		if e.User.Present || e.ClientID.Present {
			return e, invalid("Invalid quota entity combination, IP entity should not be combined with User or ClientId")
		}
		// Kafka also accepts a host name it can resolve; resolving would
		// put DNS on the request path, and connections are counted by the
		// address they come from anyway.
		if !e.IP.Default && net.ParseIP(e.IP.Name) == nil {
			return e, invalid("%s is not a valid IP address (the built-in broker does not resolve host names)", e.IP.Name)
		}
	}
	return e, nil
}

// keysOf returns the quota keys entity e may have.
func keysOf(e Entity) map[string]keyKind {
	if e.IP.Present {
		return ipKeys
	}
	return clientKeys
}

// checkValue checks one quota value as Kafka's controller does.
func checkValue(keys map[string]keyKind, key string, v float64) *Error {
	kind, ok := keys[key]
	if !ok {
		return invalid("Invalid configuration key %s", key)
	}
	// Kafka takes any double; a negative or non-finite rate has no meaning
	// and would make the throttle arithmetic NaN.
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return invalid("Configuration %s must be a non-negative number, not %v", key, v)
	}
	if kind == kindDouble {
		return nil
	}
	const epsilon = 1e-6
	if math.Abs(math.Trunc(v+epsilon)-v) > epsilon {
		return invalid("Configuration %s must be a Long value", key)
	}
	if kind == kindInt && v > math.MaxInt32 {
		return invalid("Configuration %s must be an Int value", key)
	}
	return nil
}

// Op is one change of an alteration: set Key to Value, or remove it.
type Op struct {
	Key    string
	Value  float64
	Remove bool
}

// Alteration changes one entity's quotas.
type Alteration struct {
	Entity []EntityPart
	Ops    []Op
}

// state is an immutable snapshot of every entity's quotas.
type state struct {
	quotas map[Entity]map[string]float64
	// ips indexes the IP entities' connection_creation_rate by the
	// address in Go's canonical form ("" for the default), so "::1" and
	// "0:0::1" name one address as Kafka's InetAddress does.
	ips map[string]float64
	// keys are the quota keys some entity has: a request with no quota of
	// its kind anywhere is decided by one map lookup.
	keys map[string]bool
}

func newState(quotas map[Entity]map[string]float64) *state {
	st := &state{quotas: quotas, ips: map[string]float64{}, keys: map[string]bool{}}
	for e, q := range quotas {
		for k := range q {
			st.keys[k] = true
		}
		v, ok := q[ConnectionCreationRate]
		if !e.IP.Present || !ok {
			continue
		}
		key := ""
		if !e.IP.Default {
			key = net.ParseIP(e.IP.Name).String()
		}
		st.ips[key] = v
	}
	return st
}

// Store holds the quotas.
type Store struct {
	path string
	mu   sync.Mutex // serialises changes
	cur  atomic.Pointer[state]
}

// fileEntry is one entity's quotas in File.
type fileEntry struct {
	Entity []EntityPart       `json:"entity"`
	Values map[string]float64 `json:"values"`
}

type fileData struct {
	Quotas []fileEntry `json:"quotas"`
}

// Open loads the quotas kept in dir (none if the file does not exist).
func Open(dir string) (*Store, error) {
	s := &Store{path: filepath.Join(dir, File)}
	quotas := map[Entity]map[string]float64{}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read client quotas: %w", err)
	default:
		var fd fileData
		if err := json.Unmarshal(data, &fd); err != nil {
			return nil, fmt.Errorf("client quotas %s: %w; fix or delete the file (its quotas are then gone)", s.path, err)
		}
		for _, fe := range fd.Quotas {
			e, err := ParseEntity(fe.Entity)
			if err == nil {
				for k, v := range fe.Values {
					if verr := checkValue(keysOf(e), k, v); verr != nil {
						err = verr
						break
					}
				}
			}
			if err != nil {
				return nil, fmt.Errorf("client quotas %s: entity %v: %w; fix or delete the file", s.path, fe.Entity, err)
			}
			if len(fe.Values) > 0 {
				quotas[e] = fe.Values
			}
		}
	}
	s.cur.Store(newState(quotas))
	return s, nil
}

// Len is the number of entities with quotas.
func (s *Store) Len() int { return len(s.cur.Load().quotas) }

// Alter applies alterations, each on its own: the result at i is nil or
// why alteration i was refused (an *Error). The changes accepted are
// stored durably before they take effect; with validateOnly nothing is.
// A failure to store is returned as err, with nothing changed.
func (s *Store) Alter(alts []Alteration, validateOnly bool) (results []error, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := make(map[Entity]map[string]float64, len(old.quotas))
	for e, q := range old.quotas {
		next[e] = q
	}
	results = make([]error, len(alts))
	seen := map[Entity]bool{}
	changed := false
	for i, a := range alts {
		e, perr := ParseEntity(a.Entity)
		if perr != nil {
			results[i] = perr
			continue
		}
		if seen[e] {
			results[i] = invalid("Ignoring duplicate entity %v", e)
			continue
		}
		seen[e] = true
		q, aerr := alterOne(next[e], e, a.Ops)
		if aerr != nil {
			results[i] = aerr
			continue
		}
		if _, had := next[e]; !had && len(q) > 0 && len(next) >= MaxEntities {
			results[i] = invalid("%d entities have quotas, the most the built-in broker keeps; remove some first", MaxEntities)
			continue
		}
		if len(q) == 0 {
			delete(next, e)
		} else {
			next[e] = q
		}
		changed = true
	}
	if validateOnly || !changed {
		return results, nil
	}
	if err := s.write(next); err != nil {
		return nil, err
	}
	s.cur.Store(newState(next))
	return results, nil
}

// alterOne returns cur with ops applied, as a new map.
func alterOne(cur map[string]float64, e Entity, ops []Op) (map[string]float64, error) {
	keys := keysOf(e)
	out := make(map[string]float64, len(cur)+len(ops))
	for k, v := range cur {
		out[k] = v
	}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.Key] {
			return nil, invalid("Duplicate quota key %s not updating quota for this entity %v", op.Key, e)
		}
		seen[op.Key] = true
		if op.Remove {
			// Kafka removes a key it does not have without complaint,
			// and does not check the key's name for a removal.
			delete(out, op.Key)
			continue
		}
		if err := checkValue(keys, op.Key, op.Value); err != nil {
			return nil, err
		}
		out[op.Key] = op.Value
	}
	return out, nil
}

// write replaces the file with quotas.
func (s *Store) write(quotas map[Entity]map[string]float64) error {
	fd := fileData{Quotas: []fileEntry{}}
	for _, e := range sortedEntities(quotas) {
		fd.Quotas = append(fd.Quotas, fileEntry{Entity: e.Parts(), Values: quotas[e]})
	}
	data, err := json.MarshalIndent(&fd, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(s.path, append(data, '\n')); err != nil {
		return fmt.Errorf("store client quotas: %w", err)
	}
	return nil
}

// sortedEntities lists the entities of quotas in a stable order.
func sortedEntities(quotas map[Entity]map[string]float64) []Entity {
	out := make([]Entity, 0, len(quotas))
	for e := range quotas {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entity) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// Match types of a DescribeClientQuotas component.
const (
	MatchExact   = 0
	MatchDefault = 1
	MatchAny     = 2
)

// Component is one filter component of DescribeClientQuotas.
type Component struct {
	EntityType string
	MatchType  int8
	Match      *string
}

// Entry is one entity's quotas.
type Entry struct {
	Entity Entity
	Values map[string]float64
}

// Describe lists the entities matching the filter, as Kafka's
// ClientQuotasImage.describe: every component must match (an exact name,
// the default, or any entity of the type), and with strict the entity
// names no other type.
func (s *Store) Describe(components []Component, strict bool) ([]Entry, error) {
	type want struct {
		any  bool
		part Part
	}
	filter := map[string]want{}
	for _, c := range components {
		if c.EntityType == "" {
			return nil, invalid("Invalid empty entity type.")
		}
		if _, dup := filter[c.EntityType]; dup {
			return nil, invalid("Entity type %s cannot appear more than once in the filter.", c.EntityType)
		}
		if c.EntityType != User && c.EntityType != ClientID && c.EntityType != IP {
			return nil, &Error{Code: kerr.UnsupportedVersion, Message: "Unsupported entity type " + c.EntityType}
		}
		switch c.MatchType {
		case MatchExact:
			if c.Match == nil {
				return nil, invalid("Request specified MATCH_TYPE_EXACT, but set match string to null.")
			}
			filter[c.EntityType] = want{part: Named(*c.Match)}
		case MatchDefault:
			if c.Match != nil {
				return nil, invalid("Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")
			}
			filter[c.EntityType] = want{part: DefaultPart}
		case MatchAny:
			if c.Match != nil {
				return nil, invalid("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.")
			}
			filter[c.EntityType] = want{any: true}
		default:
			return nil, invalid("Unknown match type %d", c.MatchType)
		}
	}
	_, ip := filter[IP]
	_, user := filter[User]
	_, client := filter[ClientID]
	if ip && (user || client) {
		return nil, invalid("Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.")
	}
	if len(filter) == 0 && strict {
		return nil, nil
	}
	st := s.cur.Load()
	var out []Entry
	for _, e := range sortedEntities(st.quotas) {
		if strict && e.size() != len(filter) {
			continue
		}
		ok := true
		for typ, w := range filter {
			p := *e.part(typ)
			if !p.Present || (!w.any && p != w.part) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, Entry{Entity: e, Values: st.quotas[e]})
		}
	}
	return out, nil
}
