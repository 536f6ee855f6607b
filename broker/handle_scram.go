package broker

import (
	"maps"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// scramMechanisms maps the protocol's mechanism numbers (KIP-554) to names.
var scramMechanisms = map[int8]string{1: MechSCRAMSHA256, 2: MechSCRAMSHA512}

func scramMechanismNumber(name string) int8 {
	for n, m := range scramMechanisms {
		if m == name {
			return n
		}
	}
	return 0
}

// handleDescribeUserSCRAMCredentials lists users' SCRAM mechanisms and
// iterations (never salts or keys), as Kafka does: a null or empty list
// means every user. It needs DESCRIBE on the cluster.
func handleDescribeUserSCRAMCredentials(r *request) reply {
	req := r.msg.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !r.authorizedCluster(opDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return respond(resp)
	}
	resp.Results = r.c.b.users.describe(req.Users)
	return respond(resp)
}

func (s *userStore) describe(users []kmsg.DescribeUserSCRAMCredentialsRequestUser) []kmsg.DescribeUserSCRAMCredentialsResponseResult {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var names []string
	times := map[string]int{}
	if len(users) == 0 {
		for name, rec := range s.byName {
			if len(rec.SCRAM) > 0 {
				names = append(names, name)
			}
		}
		sort.Strings(names)
	} else {
		for _, u := range users {
			if times[u.Name] == 0 {
				names = append(names, u.Name)
			}
			times[u.Name]++
		}
	}
	results := make([]kmsg.DescribeUserSCRAMCredentialsResponseResult, 0, len(names))
	for _, name := range names {
		res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		res.User = name
		rec := s.byName[name]
		switch {
		case times[name] > 1:
			res.ErrorCode = kerr.DuplicateResource.Code
			res.ErrorMessage = kmsg.StringPtr("Cannot describe SCRAM credentials for the same user twice in a single request")
		case rec == nil || len(rec.SCRAM) == 0:
			res.ErrorCode = kerr.ResourceNotFound.Code
			res.ErrorMessage = kmsg.StringPtr("Attempt to describe a user credential that does not exist")
		default:
			for _, mech := range []string{MechSCRAMSHA256, MechSCRAMSHA512} {
				if cred, ok := rec.SCRAM[mech]; ok {
					info := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
					info.Mechanism = scramMechanismNumber(mech)
					info.Iterations = int32(cred.Iterations)
					res.CredentialInfos = append(res.CredentialInfos, info)
				}
			}
		}
		results = append(results, res)
	}
	return results
}

// handleAlterUserSCRAMCredentials adds, replaces and deletes SCRAM
// credentials, checked as Kafka checks them. The client sends the salted
// password; the broker keeps only the keys derived from it. It needs ALTER
// on the cluster.
func handleAlterUserSCRAMCredentials(r *request) reply {
	req := r.msg.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	if !r.authorizedCluster(opAlter) {
		// Kafka answers every user named.
		seen := map[string]bool{}
		add := func(name string) {
			if !seen[name] {
				seen[name] = true
				res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
				res.User, res.ErrorCode = name, kerr.ClusterAuthorizationFailed.Code
				resp.Results = append(resp.Results, res)
			}
		}
		for _, d := range req.Deletions {
			add(d.Name)
		}
		for _, u := range req.Upsertions {
			add(u.Name)
		}
		return respond(resp)
	}
	resp.Results = r.c.b.users.alter(req)
	for _, res := range resp.Results {
		if res.ErrorCode == 0 {
			r.c.log.Info("SCRAM credentials altered", "user", res.User, "by", r.c.principal)
		}
	}
	return respond(resp)
}

type scramChange struct {
	mech   string
	delete bool
	cred   scramCredential
}

// alter applies the request user by user: a user with any invalid change
// gets that error and none of its changes, the others are applied and
// saved together.
func (s *userStore) alter(req *kmsg.AlterUserSCRAMCredentialsRequest) []kmsg.AlterUserSCRAMCredentialsResponseResult {
	type userChanges struct {
		code    int16
		msg     string
		changes []scramChange
		seen    map[int8]bool
	}
	var order []string
	byUser := map[string]*userChanges{}
	get := func(name string) *userChanges {
		u := byUser[name]
		if u == nil {
			u = &userChanges{seen: map[int8]bool{}}
			byUser[name] = u
			order = append(order, name)
		}
		return u
	}
	fail := func(u *userChanges, code int16, msg string) {
		if u.code == 0 {
			u.code, u.msg = code, msg
		}
	}
	check := func(u *userChanges, name string, mech int8) (string, bool) {
		if err := checkUserName(name); err != nil {
			fail(u, kerr.UnacceptableCredential.Code, err.Error())
			return "", false
		}
		m, ok := scramMechanisms[mech]
		if !ok {
			fail(u, kerr.UnsupportedSaslMechanism.Code, "Unknown SCRAM mechanism")
			return "", false
		}
		if u.seen[mech] {
			fail(u, kerr.DuplicateResource.Code, "A user credential cannot be altered twice in the same request")
			return "", false
		}
		u.seen[mech] = true
		return m, true
	}
	for _, d := range req.Deletions {
		u := get(d.Name)
		if m, ok := check(u, d.Name, d.Mechanism); ok {
			u.changes = append(u.changes, scramChange{mech: m, delete: true})
		}
	}
	for _, up := range req.Upsertions {
		u := get(up.Name)
		m, ok := check(u, up.Name, up.Mechanism)
		if !ok {
			continue
		}
		switch {
		case up.Iterations < MinSCRAMIterations:
			fail(u, kerr.UnacceptableCredential.Code, "Too few iterations")
		case up.Iterations > MaxSCRAMIterations:
			fail(u, kerr.UnacceptableCredential.Code, "Too many iterations")
		case len(up.Salt) == 0 || len(up.SaltedPassword) == 0:
			fail(u, kerr.UnacceptableCredential.Code, "Salt and salted password must not be empty")
		default:
			u.changes = append(u.changes, scramChange{mech: m,
				cred: credentialFromSalted(m, up.Salt, up.SaltedPassword, int(up.Iterations))})
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(s.byName)
	changed := false
	for _, name := range order {
		u := byUser[name]
		if u.code != 0 {
			continue
		}
		var rec *userRecord
		if old := next[name]; old != nil {
			c := *old
			c.SCRAM = maps.Clone(old.SCRAM)
			rec = &c
		} else {
			rec = &userRecord{Name: name}
		}
		if rec.SCRAM == nil {
			rec.SCRAM = map[string]scramCredential{}
		}
		for _, ch := range u.changes {
			if !ch.delete {
				rec.SCRAM[ch.mech] = ch.cred
				continue
			}
			if _, ok := rec.SCRAM[ch.mech]; !ok {
				fail(u, kerr.ResourceNotFound.Code, "Attempt to delete a user credential that does not exist")
				break
			}
			delete(rec.SCRAM, ch.mech)
		}
		if u.code != 0 {
			continue
		}
		if len(rec.SCRAM) == 0 {
			delete(next, name) // nothing left to log in with
		} else {
			next[name] = rec
		}
		changed = true
	}
	if changed {
		prev := s.byName
		s.byName = next
		if err := s.save(); err != nil {
			s.byName = prev
			for _, name := range order {
				if u := byUser[name]; u.code == 0 {
					fail(u, kerr.KafkaStorageError.Code, err.Error())
				}
			}
		}
	}
	results := make([]kmsg.AlterUserSCRAMCredentialsResponseResult, 0, len(order))
	for _, name := range order {
		u := byUser[name]
		res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		res.User, res.ErrorCode = name, u.code
		if u.code != 0 {
			res.ErrorMessage = kmsg.StringPtr(u.msg)
		}
		results = append(results, res)
	}
	return results
}
