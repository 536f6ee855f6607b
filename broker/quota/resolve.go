package quota

// Tags name the sensor a client's usage is measured on, as Kafka's default
// quota callback tags it: which of the user and client id the quota that
// applies was set on decides whether clients share a sensor (a quota on
// /users/alice is shared by all of alice's client ids; one on
// /users/alice/clients/app is app's alone).
type Tags struct {
	User, ClientID string
}

// SensorKey is a sensor: a quota key and the tags of who it measures (for
// connection_creation_rate, the client's address in IP).
type SensorKey struct {
	Key string
	Tags
	IP string
}

// ResolveIP returns the sensor and the connection_creation_rate of
// connections from ip (the address as Go writes it): the quota of that
// address, else the default IP quota, else ok false.
func (s *Store) ResolveIP(ip string) (SensorKey, float64, bool) {
	st := s.cur.Load()
	if len(st.ips) == 0 {
		return SensorKey{}, 0, false
	}
	v, ok := st.ips[ip]
	if !ok {
		v, ok = st.ips[""]
	}
	return SensorKey{Key: ConnectionCreationRate, IP: ip}, v, ok
}

// Resolve returns the sensor and the quota for key (ProducerByteRate,
// ConsumerByteRate) of user and clientID, or ok false when no quota
// applies. The precedence is Kafka's:
//
//	/users/<user>/clients/<client-id>
//	/users/<user>/clients/<default>
//	/users/<user>
//	/users/<default>/clients/<client-id>
//	/users/<default>/clients/<default>
//	/users/<default>
//	/clients/<client-id>
//	/clients/<default>
func (s *Store) Resolve(key, user, clientID string) (SensorKey, float64, bool) {
	st := s.cur.Load()
	if !st.keys[key] {
		return SensorKey{}, 0, false
	}
	tags := st.tags(key, user, clientID)
	bound, ok := st.limit(key, tags)
	return SensorKey{Key: key, Tags: tags}, bound, ok
}

// has reports whether entity (user, client) has a quota for key.
func (st *state) has(key string, user, client Part) bool {
	_, ok := st.quotas[Entity{User: user, ClientID: client}][key]
	return ok
}

func (st *state) get(key string, user, client Part) (float64, bool) {
	v, ok := st.quotas[Entity{User: user, ClientID: client}][key]
	return v, ok
}

// tags is Kafka's DefaultQuotaCallback.quotaMetricTags.
func (st *state) tags(key, user, clientID string) Tags {
	u, c := Named(user), Named(clientID)
	none := Part{}
	switch {
	case st.has(key, u, c), st.has(key, u, DefaultPart):
		return Tags{user, clientID}
	case st.has(key, u, none):
		return Tags{user, ""}
	case st.has(key, DefaultPart, c), st.has(key, DefaultPart, DefaultPart):
		return Tags{user, clientID}
	case st.has(key, DefaultPart, none):
		return Tags{user, ""}
	}
	return Tags{"", clientID}
}

// limit is Kafka's DefaultQuotaCallback.quotaLimit: the quota of the
// sensor tagged t.
func (st *state) limit(key string, t Tags) (float64, bool) {
	u, c := Named(t.User), Named(t.ClientID)
	none := Part{}
	var order [][2]Part
	switch {
	case t.User != "" && t.ClientID != "":
		order = [][2]Part{{u, c}, {u, DefaultPart}, {DefaultPart, c}, {DefaultPart, DefaultPart}}
	case t.User != "":
		order = [][2]Part{{u, none}, {DefaultPart, none}}
	case t.ClientID != "":
		order = [][2]Part{{none, c}, {none, DefaultPart}}
	}
	for _, o := range order {
		if v, ok := st.get(key, o[0], o[1]); ok {
			return v, true
		}
	}
	return 0, false
}
