package quota

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func sp(s string) *string { return &s }

func user(name *string) EntityPart   { return EntityPart{Type: User, Name: name} }
func client(name *string) EntityPart { return EntityPart{Type: ClientID, Name: name} }

func set(key string, v float64) Op { return Op{Key: key, Value: v} }

func mustAlter(t *testing.T, s *Store, alts ...Alteration) {
	t.Helper()
	res, err := s.Alter(alts, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range res {
		if err != nil {
			t.Fatalf("alteration %d: %v", i, err)
		}
	}
}

// TestResolvePrecedence: each of Kafka's eight levels wins over the ones
// below it, and the sensor is shared as Kafka tags it.
func TestResolvePrecedence(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Resolve(ProducerByteRate, "alice", "app"); ok {
		t.Fatal("a quota applies with none set")
	}
	levels := []struct {
		entity []EntityPart
		tags   Tags
	}{
		{[]EntityPart{client(nil)}, Tags{"", "app"}},
		{[]EntityPart{client(sp("app"))}, Tags{"", "app"}},
		{[]EntityPart{user(nil)}, Tags{"alice", ""}},
		{[]EntityPart{user(nil), client(nil)}, Tags{"alice", "app"}},
		{[]EntityPart{user(nil), client(sp("app"))}, Tags{"alice", "app"}},
		{[]EntityPart{user(sp("alice"))}, Tags{"alice", ""}},
		{[]EntityPart{user(sp("alice")), client(nil)}, Tags{"alice", "app"}},
		{[]EntityPart{user(sp("alice")), client(sp("app"))}, Tags{"alice", "app"}},
	}
	// Set from the lowest level up: each new one must win.
	for i, l := range levels {
		mustAlter(t, s, Alteration{Entity: l.entity, Ops: []Op{set(ProducerByteRate, float64(100*(i+1)))}})
		key, bound, ok := s.Resolve(ProducerByteRate, "alice", "app")
		if !ok || bound != float64(100*(i+1)) || key.Tags != l.tags || key.Key != ProducerByteRate {
			t.Fatalf("level %d (%v): got %v %v %v, want bound %d tags %v", i, l.entity, key, bound, ok, 100*(i+1), l.tags)
		}
		// Another quota key does not count.
		if _, _, ok := s.Resolve(ConsumerByteRate, "alice", "app"); ok {
			t.Fatalf("level %d: consumer_byte_rate resolved from producer quotas", i)
		}
	}
	// Another user of the same client id: /users/<default>/clients/app.
	if _, bound, _ := s.Resolve(ProducerByteRate, "bob", "app"); bound != 500 {
		t.Fatalf("bob/app: bound %v, want 500 (/users/<default>/clients/app)", bound)
	}
	// Another client id of alice: /users/alice/clients/<default>.
	if _, bound, _ := s.Resolve(ProducerByteRate, "alice", "other"); bound != 700 {
		t.Fatalf("alice/other: bound %v, want 700", bound)
	}
}

func TestAlterValidation(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		alt  Alteration
		want string
	}{
		{Alteration{}, "Invalid empty client quota entity"},
		{Alteration{Entity: []EntityPart{{Type: "group", Name: sp("g")}}}, "Unhandled client quota entity type: group"},
		{Alteration{Entity: []EntityPart{user(sp("a")), user(sp("b"))}}, "Invalid empty client quota entity, duplicate entity entry user"},
		{Alteration{Entity: []EntityPart{user(sp(""))}}, "Empty user not supported"},
		{Alteration{Entity: []EntityPart{user(sp("a")), {Type: IP, Name: sp("10.0.0.1")}}}, "Invalid quota entity combination, IP entity should not be combined with User or ClientId"},
		{Alteration{Entity: []EntityPart{{Type: IP, Name: sp("not an ip")}}}, "not an ip is not a valid IP address (the built-in broker does not resolve host names)"},
		{Alteration{Entity: []EntityPart{user(sp("a"))}, Ops: []Op{set("bogus", 1)}}, "Invalid configuration key bogus"},
		{Alteration{Entity: []EntityPart{user(sp("a"))}, Ops: []Op{set(ConnectionCreationRate, 1)}}, "Invalid configuration key connection_creation_rate"},
		{Alteration{Entity: []EntityPart{{Type: IP, Name: nil}}, Ops: []Op{set(ProducerByteRate, 1)}}, "Invalid configuration key producer_byte_rate"},
		{Alteration{Entity: []EntityPart{user(sp("a"))}, Ops: []Op{set(ProducerByteRate, 1.5)}}, "Configuration producer_byte_rate must be a Long value"},
		{Alteration{Entity: []EntityPart{user(sp("a"))}, Ops: []Op{set(ProducerByteRate, -1)}}, "Configuration producer_byte_rate must be a non-negative number, not -1"},
		{Alteration{Entity: []EntityPart{user(sp("a"))}, Ops: []Op{set(RequestPercentage, math.NaN())}}, "Configuration request_percentage must be a non-negative number, not NaN"},
		{Alteration{Entity: []EntityPart{user(sp("a"))}, Ops: []Op{set(ProducerByteRate, 1), set(ProducerByteRate, 2)}}, "Duplicate quota key producer_byte_rate not updating quota for this entity {user=a}"},
	}
	for _, c := range cases {
		res, err := s.Alter([]Alteration{c.alt}, false)
		if err != nil {
			t.Fatal(err)
		}
		var qe *Error
		if !errors.As(res[0], &qe) || qe.Code != kerr.InvalidRequest || qe.Message != c.want {
			t.Errorf("%+v: got %v, want INVALID_REQUEST %q", c.alt, res[0], c.want)
		}
	}
	if s.Len() != 0 {
		t.Fatalf("refused alterations left %d entities", s.Len())
	}
	// A valid one beside a duplicate of itself: the first applies.
	alt := Alteration{Entity: []EntityPart{user(sp("a"))}, Ops: []Op{set(RequestPercentage, 12.5), set(ControllerMutationRate, 3)}}
	res, err := s.Alter([]Alteration{alt, alt}, false)
	if err != nil || res[0] != nil || res[1] == nil || res[1].Error() != "Ignoring duplicate entity {user=a}" {
		t.Fatalf("duplicate entity: %v %v", res, err)
	}
	// IP quotas: an address and the default.
	mustAlter(t, s, Alteration{Entity: []EntityPart{{Type: IP, Name: sp("::1")}}, Ops: []Op{set(ConnectionCreationRate, 10)}},
		Alteration{Entity: []EntityPart{{Type: IP}}, Ops: []Op{set(ConnectionCreationRate, 100)}})
	if s.Len() != 3 {
		t.Fatalf("%d entities, want 3", s.Len())
	}
}

// TestDescribeFilters: Kafka's exact, default and any matches, strict, and
// its refusals.
func TestDescribeFilters(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustAlter(t, s,
		Alteration{Entity: []EntityPart{user(sp("alice"))}, Ops: []Op{set(ProducerByteRate, 1)}},
		Alteration{Entity: []EntityPart{user(sp("alice")), client(sp("app"))}, Ops: []Op{set(ProducerByteRate, 2)}},
		Alteration{Entity: []EntityPart{user(nil)}, Ops: []Op{set(ConsumerByteRate, 3)}},
		Alteration{Entity: []EntityPart{client(nil)}, Ops: []Op{set(ConsumerByteRate, 4)}},
		Alteration{Entity: []EntityPart{{Type: IP, Name: sp("10.1.2.3")}}, Ops: []Op{set(ConnectionCreationRate, 5)}},
	)
	count := func(strict bool, cs ...Component) int {
		t.Helper()
		es, err := s.Describe(cs, strict)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	exact := func(typ, name string) Component {
		return Component{EntityType: typ, MatchType: MatchExact, Match: sp(name)}
	}
	for _, c := range []struct {
		strict bool
		cs     []Component
		want   int
	}{
		{false, nil, 5},
		{true, nil, 0},
		{false, []Component{exact(User, "alice")}, 2},
		{true, []Component{exact(User, "alice")}, 1},
		{false, []Component{{EntityType: User, MatchType: MatchDefault}}, 1},
		{false, []Component{{EntityType: User, MatchType: MatchAny}}, 3},
		{true, []Component{{EntityType: User, MatchType: MatchAny}}, 2},
		{false, []Component{exact(User, "alice"), {EntityType: ClientID, MatchType: MatchAny}}, 1},
		{false, []Component{{EntityType: ClientID, MatchType: MatchDefault}}, 1},
		{false, []Component{{EntityType: IP, MatchType: MatchAny}}, 1},
		{false, []Component{exact(User, "bob")}, 0},
	} {
		if got := count(c.strict, c.cs...); got != c.want {
			t.Errorf("strict=%v %+v: %d entities, want %d", c.strict, c.cs, got, c.want)
		}
	}
	for _, c := range []struct {
		cs   []Component
		code *kerr.Error
		want string
	}{
		{[]Component{{EntityType: "", MatchType: MatchAny}}, kerr.InvalidRequest, "Invalid empty entity type."},
		{[]Component{{EntityType: "group", MatchType: MatchAny}}, kerr.UnsupportedVersion, "Unsupported entity type group"},
		{[]Component{{EntityType: User, MatchType: MatchAny}, {EntityType: User, MatchType: MatchDefault}}, kerr.InvalidRequest, "Entity type user cannot appear more than once in the filter."},
		{[]Component{{EntityType: User, MatchType: MatchExact}}, kerr.InvalidRequest, "Request specified MATCH_TYPE_EXACT, but set match string to null."},
		{[]Component{{EntityType: User, MatchType: MatchDefault, Match: sp("x")}}, kerr.InvalidRequest, "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."},
		{[]Component{{EntityType: User, MatchType: 7}}, kerr.InvalidRequest, "Unknown match type 7"},
		{[]Component{{EntityType: IP, MatchType: MatchAny}, {EntityType: User, MatchType: MatchAny}}, kerr.InvalidRequest,
			"Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component."},
	} {
		_, err := s.Describe(c.cs, false)
		var qe *Error
		if !errors.As(err, &qe) || qe.Code != c.code || qe.Message != c.want {
			t.Errorf("%+v: got %v, want %v %q", c.cs, err, c.code, c.want)
		}
	}

	// Removing every key removes the entity; what is left survives a
	// reopen, as written.
	res, err := s.Alter([]Alteration{{Entity: []EntityPart{user(nil)}, Ops: []Op{{Key: ConsumerByteRate, Remove: true}}}}, false)
	if err != nil || res[0] != nil {
		t.Fatal(res, err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Len() != 4 {
		t.Fatalf("reopened with %d entities, want 4", s2.Len())
	}
	if _, bound, ok := s2.Resolve(ProducerByteRate, "alice", "app"); !ok || bound != 2 {
		t.Fatalf("reopened: alice/app bound %v %v, want 2", bound, ok)
	}
	// validate_only changes nothing.
	if res, err := s2.Alter([]Alteration{{Entity: []EntityPart{user(sp("carol"))}, Ops: []Op{set(ProducerByteRate, 9)}}}, true); err != nil || res[0] != nil || s2.Len() != 4 {
		t.Fatalf("validate only: %v %v, %d entities", res, err, s2.Len())
	}
	// A damaged file is refused with what to do.
	if err := os.WriteFile(filepath.Join(dir, File), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("a damaged quota file was accepted")
	}
}

// TestSensorThrottle: Kafka's rate over the window and its throttle time,
// on a clock the test moves.
func TestSensorThrottle(t *testing.T) {
	s := NewSensors()
	key := SensorKey{Key: ProducerByteRate, Tags: Tags{User: "alice"}}
	t0 := time.Unix(1_700_000_000, 0)
	// 1000 B/s quota: 10,000 bytes at once is the window's first sample;
	// the rate is measured over (WindowSamples-1) seconds: 1000 B/s, at
	// the bound, not over it.
	if d := s.Record(key, 1000, 10000, t0); d != 0 {
		t.Fatalf("at the bound: throttled %v", d)
	}
	// 11,000 more: 21,000 over 10 s = 2100 B/s; (2100-1000)/1000 * 10 s.
	if d := s.Record(key, 1000, 11000, t0); d != 11*time.Second {
		t.Fatalf("over the bound: throttle %v, want 11s", d)
	}
	if r, ok := s.Rate(key, t0); !ok || r != 2100 {
		t.Fatalf("rate %v %v, want 2100", r, ok)
	}
	// Unrecording takes it back.
	s.Unrecord(key, 11000, t0)
	if r, _ := s.Rate(key, t0); r != 1000 {
		t.Fatalf("rate after unrecord %v, want 1000", r)
	}
	// After the whole window the old samples no longer count.
	later := t0.Add(WindowSamples * WindowSize)
	if d := s.Record(key, 1000, 100, later); d != 0 {
		t.Fatalf("after the window: throttled %v", d)
	}
	if r, _ := s.Rate(key, later); r != 10 {
		t.Fatalf("rate after the window %v, want 10", r)
	}
	// A zero quota throttles as long as an int32 of milliseconds says.
	if d := s.Record(SensorKey{Key: ProducerByteRate}, 0, 1, t0); d != math.MaxInt32*time.Millisecond {
		t.Fatalf("zero quota: throttle %v", d)
	}
	if got := MaxBytesInWindow(1000); got != 10000 {
		t.Fatalf("MaxBytesInWindow(1000) = %d, want 10000", got)
	}
}

// TestSensorsBounded: past MaxSensors the least recently used goes, and
// idle ones expire.
func TestSensorsBounded(t *testing.T) {
	s := NewSensors()
	s.max = 3
	t0 := time.Unix(1_700_000_000, 0)
	for i, c := range []string{"a", "b", "c", "d"} {
		s.Record(SensorKey{Key: ProducerByteRate, Tags: Tags{ClientID: c}}, 1e9, 1, t0.Add(time.Duration(i)*time.Minute))
	}
	if s.Len() != 3 {
		t.Fatalf("%d sensors, want 3", s.Len())
	}
	if _, ok := s.Rate(SensorKey{Key: ProducerByteRate, Tags: Tags{ClientID: "a"}}, t0); ok {
		t.Fatal("the least recently used sensor was kept")
	}
	// An hour after c's last record, b and c are idle, d (a minute later) not.
	s.Expire(t0.Add(2*time.Minute + SensorIdleExpiry))
	if s.Len() != 1 {
		t.Fatalf("%d sensors after expiry, want 1", s.Len())
	}
}

// TestResolveIP: an address's own connection_creation_rate, in any of its
// written forms, before the default.
func TestResolveIP(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.ResolveIP("::1"); ok {
		t.Fatal("a rate applies with none set")
	}
	mustAlter(t, s,
		Alteration{Entity: []EntityPart{{Type: IP, Name: sp("0:0::1")}}, Ops: []Op{set(ConnectionCreationRate, 3)}},
		Alteration{Entity: []EntityPart{{Type: IP}}, Ops: []Op{set(ConnectionCreationRate, 7)}})
	if key, v, ok := s.ResolveIP("::1"); !ok || v != 3 || key.IP != "::1" || key.Key != ConnectionCreationRate {
		t.Fatalf("::1: %v %v %v, want 3", key, v, ok)
	}
	if _, v, ok := s.ResolveIP("10.0.0.9"); !ok || v != 7 {
		t.Fatalf("10.0.0.9: %v %v, want the default 7", v, ok)
	}
	// A connection throttle is at most one sample long.
	sn := NewSensors()
	if d := sn.RecordConnection(SensorKey{Key: ConnectionCreationRate, IP: "::1"}, 0, time.Now()); d != WindowSize {
		t.Fatalf("connection throttle %v, want %v", d, WindowSize)
	}
}
