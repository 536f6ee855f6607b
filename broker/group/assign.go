package group

import (
	"slices"
	"sort"
)

// Server-side assignors of consumer-protocol groups (KIP-848), named as
// Kafka names them. Both are written here from their documented behaviour:
// "uniform" spreads every subscribed partition so member counts differ by
// at most one among members that could take it, keeping partitions where
// they were when that stays balanced; "range" gives each member a
// contiguous range of every topic it subscribes to, in member-id order, so
// co-partitioned topics land together.
const (
	UniformAssignor = "uniform"
	RangeAssignor   = "range"
	// DefaultAssignor is used when no member names one, as Kafka's
	// group.consumer.assignors default lists uniform first.
	DefaultAssignor = UniformAssignor
)

// knownAssignor says whether name is a server assignor this broker runs.
func knownAssignor(name string) bool {
	return name == UniformAssignor || name == RangeAssignor
}

// tp is a topic partition by name.
type tp struct {
	topic string
	part  int32
}

// assignment maps a topic to its partitions, sorted.
type assignment map[string][]int32

func (a assignment) has(t string, p int32) bool {
	_, ok := slices.BinarySearch(a[t], p)
	return ok
}

func (a assignment) count() int {
	n := 0
	for _, ps := range a {
		n += len(ps)
	}
	return n
}

func (a assignment) clone() assignment {
	out := make(assignment, len(a))
	for t, ps := range a {
		out[t] = slices.Clone(ps)
	}
	return out
}

func (a assignment) add(t string, p int32) {
	ps := a[t]
	i, ok := slices.BinarySearch(ps, p)
	if !ok {
		a[t] = slices.Insert(ps, i, p)
	}
}

func (a assignment) each(f func(t string, p int32)) {
	for t, ps := range a {
		for _, p := range ps {
			f(t, p)
		}
	}
}

// minus returns the partitions of a that b does not have.
func (a assignment) minus(b assignment) assignment {
	out := assignment{}
	a.each(func(t string, p int32) {
		if !b.has(t, p) {
			out.add(t, p)
		}
	})
	return out
}

// intersect returns the partitions both have.
func (a assignment) intersect(b assignment) assignment {
	out := assignment{}
	a.each(func(t string, p int32) {
		if b.has(t, p) {
			out.add(t, p)
		}
	})
	return out
}

func (a assignment) equal(b assignment) bool {
	return a.count() == b.count() && a.minus(b).count() == 0
}

// assignInput is what an assignor sees: each member's subscribed topics
// (resolved, existing ones only), the partition count of each topic, and
// the previous target for stickiness.
type assignInput struct {
	members    map[string][]string // member id -> subscribed topics, sorted
	partitions map[string]int32
	previous   map[string]assignment
}

func runAssignor(name string, in assignInput) map[string]assignment {
	if name == RangeAssignor {
		return assignRange(in)
	}
	return assignUniform(in)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// assignRange: per topic, its subscribers in member-id order each take a
// contiguous range; the first partitions%subscribers take one more.
func assignRange(in assignInput) map[string]assignment {
	out := map[string]assignment{}
	subs := map[string][]string{}
	for _, id := range sortedKeys(in.members) {
		out[id] = assignment{}
		for _, t := range in.members[id] {
			subs[t] = append(subs[t], id)
		}
	}
	for t, ids := range subs {
		n := in.partitions[t]
		k := int32(len(ids))
		next := int32(0)
		for i, id := range ids {
			size := n / k
			if int32(i) < n%k {
				size++
			}
			for p := next; p < next+size; p++ {
				out[id].add(t, p)
			}
			next += size
		}
	}
	return out
}

// assignUniform keeps each member's previous partitions it still
// subscribes to, gives the rest to the least loaded eligible member, then
// moves partitions from the most to the least loaded eligible member until
// no move narrows a gap of more than one.
func assignUniform(in assignInput) map[string]assignment {
	ids := sortedKeys(in.members)
	out := make(map[string]assignment, len(ids))
	count := make(map[string]int, len(ids))
	subscribed := make(map[string]map[string]bool, len(ids))
	eligible := map[string][]string{} // topic -> members subscribed, sorted
	for _, id := range ids {
		out[id] = assignment{}
		subscribed[id] = map[string]bool{}
		for _, t := range in.members[id] {
			subscribed[id][t] = true
			eligible[t] = append(eligible[t], id)
		}
	}
	owner := map[tp]string{}
	for _, id := range ids {
		in.previous[id].each(func(t string, p int32) {
			if !subscribed[id][t] || p >= in.partitions[t] {
				return
			}
			k := tp{t, p}
			if _, taken := owner[k]; taken {
				return
			}
			owner[k] = id
			out[id].add(t, p)
			count[id]++
		})
	}
	// Every partition of a subscribed topic, in a fixed order.
	var all []tp
	for _, t := range sortedKeys(eligible) {
		for p := range in.partitions[t] {
			all = append(all, tp{t, p})
		}
	}
	lightest := func(t string) string {
		best := ""
		for _, id := range eligible[t] {
			if best == "" || count[id] < count[best] {
				best = id
			}
		}
		return best
	}
	for _, k := range all {
		if _, ok := owner[k]; ok {
			continue
		}
		id := lightest(k.topic)
		owner[k] = id
		out[id].add(k.topic, k.part)
		count[id]++
	}
	// Balance. Each move lowers the sum of squared counts, so the loop
	// ends; maxPasses bounds it anyway.
	maxPasses := len(all) + 1
	for pass := 0; pass < maxPasses; pass++ {
		moved := false
		for _, k := range all {
			from := owner[k]
			to := lightest(k.topic)
			if count[from]-count[to] > 1 {
				out[from][k.topic] = slices.DeleteFunc(out[from][k.topic], func(p int32) bool { return p == k.part })
				if len(out[from][k.topic]) == 0 {
					delete(out[from], k.topic)
				}
				out[to].add(k.topic, k.part)
				count[from]--
				count[to]++
				owner[k] = to
				moved = true
			}
		}
		if !moved {
			break
		}
	}
	return out
}
