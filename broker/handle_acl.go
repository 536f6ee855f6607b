package broker

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// CreateAcls, DescribeAcls and DeleteAcls, as Kafka serves them: changes
// need ALTER on the cluster, listing DESCRIBE. Without an authorizer they
// answer SECURITY_DISABLED, as Kafka does.

// securityDisabled explains SECURITY_DISABLED, naming the authorizer flag
// of the command that runs the broker.
func securityDisabled(o *Options) string {
	return "this broker runs without an authorizer: start it with " + o.flag("authorizer") + " acl to use ACLs"
}

// aclErr turns an authorizer error into a Kafka code and message.
func (r *request) aclErr(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	msg := err.Error()
	var inv *acl.InvalidError
	if errors.As(err, &inv) || errors.Is(err, acl.ErrTooMany) {
		return kerr.InvalidRequest.Code, &msg
	}
	r.c.log.Error("changing ACLs failed", "err", err)
	return kerr.UnknownServerError.Code, &msg
}

// aclRefusal is why an ACL request is refused as a whole, with its
// message: SECURITY_DISABLED without an authorizer, as Kafka answers, or
// CLUSTER_AUTHORIZATION_FAILED without op on the cluster; 0 if it is not.
func (r *request) aclRefusal(op acl.Operation) (int16, *string) {
	switch {
	case r.c.b.authz == nil:
		return kerr.SecurityDisabled.Code, kmsg.StringPtr(securityDisabled(&r.c.b.opts))
	case !r.authorizedCluster(op):
		return kerr.ClusterAuthorizationFailed.Code, nil
	}
	return 0, nil
}

func handleCreateACLs(r *request) reply {
	req := r.msg.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	a := r.c.b.authz
	if refused, msg := r.aclRefusal(opAlter); refused != 0 {
		for range req.Creations {
			res := kmsg.NewCreateACLsResponseResult()
			res.ErrorCode, res.ErrorMessage = refused, msg
			resp.Results = append(resp.Results, res)
		}
		return respond(resp)
	}
	bindings := make([]acl.Binding, len(req.Creations))
	for i, c := range req.Creations {
		bindings[i] = acl.Binding{ResourceType: c.ResourceType, ResourceName: c.ResourceName, PatternType: c.ResourcePatternType,
			Principal: c.Principal, Host: c.Host, Operation: c.Operation, Permission: c.PermissionType}
	}
	for i, err := range a.Create(bindings) {
		res := kmsg.NewCreateACLsResponseResult()
		res.ErrorCode, res.ErrorMessage = r.aclErr(err)
		if err == nil {
			r.c.log.Info("ACL created", "by", r.c.principal, "acl", bindings[i].String())
		}
		resp.Results = append(resp.Results, res)
	}
	return respond(resp)
}

func handleDescribeACLs(r *request) reply {
	req := r.msg.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	a := r.c.b.authz
	if refused, msg := r.aclRefusal(opDescribe); refused != 0 {
		resp.ErrorCode, resp.ErrorMessage = refused, msg
		return respond(resp)
	}
	bs, err := a.Describe(acl.Filter{ResourceType: req.ResourceType, ResourceName: req.ResourceName,
		PatternType: req.ResourcePatternType, Principal: req.Principal, Host: req.Host,
		Operation: req.Operation, Permission: req.PermissionType})
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = r.aclErr(err)
		return respond(resp)
	}
	// Bindings come sorted by resource: one entry per resource pattern.
	for _, b := range bs {
		n := len(resp.Resources)
		if n == 0 || resp.Resources[n-1].ResourceType != b.ResourceType || resp.Resources[n-1].ResourceName != b.ResourceName ||
			resp.Resources[n-1].ResourcePatternType != b.PatternType {
			res := kmsg.NewDescribeACLsResponseResource()
			res.ResourceType, res.ResourceName, res.ResourcePatternType = b.ResourceType, b.ResourceName, b.PatternType
			resp.Resources = append(resp.Resources, res)
			n++
		}
		e := kmsg.NewDescribeACLsResponseResourceACL()
		e.Principal, e.Host, e.Operation, e.PermissionType = b.Principal, b.Host, b.Operation, b.Permission
		resp.Resources[n-1].ACLs = append(resp.Resources[n-1].ACLs, e)
	}
	return respond(resp)
}

func handleDeleteACLs(r *request) reply {
	req := r.msg.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	a := r.c.b.authz
	if refused, msg := r.aclRefusal(opAlter); refused != 0 {
		for range req.Filters {
			res := kmsg.NewDeleteACLsResponseResult()
			res.ErrorCode, res.ErrorMessage = refused, msg
			resp.Results = append(resp.Results, res)
		}
		return respond(resp)
	}
	filters := make([]acl.Filter, len(req.Filters))
	for i, f := range req.Filters {
		filters[i] = acl.Filter{ResourceType: f.ResourceType, ResourceName: f.ResourceName, PatternType: f.ResourcePatternType,
			Principal: f.Principal, Host: f.Host, Operation: f.Operation, Permission: f.PermissionType}
	}
	matched, errs := a.Delete(filters)
	for i := range filters {
		res := kmsg.NewDeleteACLsResponseResult()
		res.ErrorCode, res.ErrorMessage = r.aclErr(errs[i])
		for _, b := range matched[i] {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = b.ResourceType, b.ResourceName, b.PatternType
			m.Principal, m.Host, m.Operation, m.PermissionType = b.Principal, b.Host, b.Operation, b.Permission
			res.MatchingACLs = append(res.MatchingACLs, m)
			r.c.log.Info("ACL deleted", "by", r.c.principal, "acl", b.String())
		}
		resp.Results = append(resp.Results, res)
	}
	return respond(resp)
}
