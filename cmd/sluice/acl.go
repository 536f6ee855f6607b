package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// aclFlags are kafka-acls.sh's options, as far as `sluice acl` takes them.
type aclFlags struct {
	allow, deny, allowHosts, denyHosts []string
	principals                         []string // list: whoever, allowed or denied
	operations                         []string
	topics, groups, txnIDs             []string
	cluster                            bool
	pattern                            string
}

func (f *aclFlags) addResource(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.topics, "topic", nil, "topic name (repeatable; * for every topic)")
	fl.StringArrayVar(&f.groups, "group", nil, "consumer group id (repeatable; * for every group)")
	fl.StringArrayVar(&f.txnIDs, "transactional-id", nil, "transactional id (repeatable; * for every id)")
	fl.BoolVar(&f.cluster, "cluster", false, "the cluster resource (creating topics, managing ACLs and users, idempotent writes)")
}

func (f *aclFlags) addEntry(cmd *cobra.Command, create bool) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.allow, "allow-principal", nil, "principal to allow, e.g. User:alice or User:* (repeatable)")
	fl.StringArrayVar(&f.deny, "deny-principal", nil, "principal to deny (repeatable); a DENY wins over any ALLOW")
	hostHelp := "host (IP address) the allowed principals connect from (repeatable"
	if create {
		hostHelp += "; default * for any host)"
	} else {
		hostHelp += "; default any)"
	}
	fl.StringArrayVar(&f.allowHosts, "allow-host", nil, hostHelp)
	fl.StringArrayVar(&f.denyHosts, "deny-host", nil, strings.Replace(hostHelp, "allowed", "denied", 1))
	opHelp := "operation: Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs, IdempotentWrite, ClusterAction or All (repeatable)"
	if !create {
		opHelp += "; default any"
	}
	fl.StringArrayVar(&f.operations, "operation", nil, opHelp)
}

func (f *aclFlags) hasResource() bool {
	return len(f.topics)+len(f.groups)+len(f.txnIDs) > 0 || f.cluster
}

// builder turns the flags into kadm's ACL builder. For a filter (list,
// delete), what is not given matches anything.
func (f *aclFlags) builder(create bool) (*kadm.ACLBuilder, error) {
	b := kadm.NewACLs()
	pattern, err := kmsg.ParseACLResourcePatternType(f.pattern)
	if err != nil {
		return nil, fmt.Errorf("--resource-pattern-type %q: use literal or prefixed, or for list and delete also any or match", f.pattern)
	}
	if create && pattern != kmsg.ACLResourcePatternTypeLiteral && pattern != kmsg.ACLResourcePatternTypePrefixed {
		return nil, fmt.Errorf("--resource-pattern-type %s: an ACL is literal or prefixed (any and match select ACLs to list or delete)", f.pattern)
	}
	b.ResourcePatternType(pattern)
	var ops []kadm.ACLOperation
	for _, o := range f.operations {
		op, err := kmsg.ParseACLOperation(o)
		if err != nil || op == kmsg.ACLOperationAny {
			return nil, fmt.Errorf("--operation %q: use Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs, IdempotentWrite, ClusterAction or All", o)
		}
		ops = append(ops, op)
	}
	for _, p := range append(append(append([]string{}, f.allow...), f.deny...), f.principals...) {
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return nil, fmt.Errorf("principal %q: write it Type:name, e.g. User:alice (or User:* for everyone)", p)
		}
	}
	if !f.hasResource() {
		if create {
			return nil, errors.New("name what the ACL is on: --topic, --group, --transactional-id or --cluster")
		}
		b.AnyResource()
	}
	if len(f.topics) > 0 {
		b.Topics(f.topics...)
	}
	if len(f.groups) > 0 {
		b.Groups(f.groups...)
	}
	if len(f.txnIDs) > 0 {
		b.TransactionalIDs(f.txnIDs...)
	}
	if f.cluster {
		b.Clusters()
	}
	if create {
		if len(f.allow)+len(f.deny) == 0 {
			return nil, errors.New("name who the ACL is for: --allow-principal or --deny-principal (User:NAME, or User:* for everyone)")
		}
		if len(ops) == 0 {
			return nil, errors.New("name what the ACL allows or denies: --operation (Read, Write, Describe, All, ...)")
		}
		if len(f.allowHosts) > 0 && len(f.allow) == 0 || len(f.denyHosts) > 0 && len(f.deny) == 0 {
			return nil, errors.New("--allow-host needs --allow-principal, and --deny-host needs --deny-principal")
		}
		b.Allow(f.allow...).AllowHosts(f.allowHosts...).Deny(f.deny...).DenyHosts(f.denyHosts...).Operations(ops...)
		return b, nil
	}
	b.Operations(ops...) // none: any operation
	allow, deny := append(slices.Clone(f.allow), f.principals...), append(slices.Clone(f.deny), f.principals...)
	switch {
	case len(allow)+len(deny) == 0 && len(f.allowHosts)+len(f.denyHosts) == 0:
		b.Allow().Deny().AllowHosts().DenyHosts() // every entry
	default:
		// Each side given is matched on its principals (or any) and
		// hosts (or any); a side not given is not matched.
		if len(allow) > 0 || len(f.allowHosts) > 0 {
			b.MaybeAllow(allow...).AllowHosts(f.allowHosts...)
			if len(allow) == 0 {
				b.Allow()
			}
		}
		if len(deny) > 0 || len(f.denyHosts) > 0 {
			b.MaybeDeny(deny...).DenyHosts(f.denyHosts...)
			if len(deny) == 0 {
				b.Deny()
			}
		}
	}
	return b, nil
}

// aclLine describes one ACL in kafka-acls.sh's words.
func aclLine(principal, host string, op kadm.ACLOperation, perm kmsg.ACLPermissionType, rt kmsg.ACLResourceType, pattern kadm.ACLPattern, name string) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s:%s:%s", principal, host, perm, op, rt, pattern, name)
}

// newACLCmd is `sluice acl create|list|delete`, kafka-acls.sh's --add,
// --list and --remove, through CreateAcls, DescribeAcls and DeleteAcls: it
// works against the built-in broker (sluice broker --authorizer acl) and
// any Kafka cluster with an authorizer.
func newACLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Create, list and delete ACLs (like kafka-acls.sh)",
		Long: `Create, list and delete ACLs, with kafka-acls.sh's model and options. An ACL
allows or denies a principal (User:NAME, or User:* for everyone) connecting from
a host (an IP address, or * for any) one operation on a resource: a topic, a
consumer group, a transactional id or the cluster, named literally or by prefix
(--resource-pattern-type prefixed). A DENY wins over any ALLOW. Changing ACLs
needs ALTER on the cluster, listing them DESCRIBE (or being a super user).

  sluice acl create --allow-principal User:alice --operation Write --operation Describe --topic orders
  sluice acl create --allow-principal User:alice --operation Read --topic logs- --resource-pattern-type prefixed
  sluice acl create --allow-principal User:alice --operation Read --group pipeline-1
  sluice acl list --topic orders --resource-pattern-type match
  sluice acl delete --allow-principal User:alice --topic orders`,
	}
	conn := addKafkaFlags(cmd)

	var cf aclFlags
	create := &cobra.Command{
		Use:   "create",
		Short: "Create ACLs: every principal x host x operation x resource given",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := cf.builder(true)
			if err != nil {
				return err
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.CreateACLs(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("create ACLs: %w", conn.explain(err))
			}
			var errs []error
			for _, r := range res {
				line := aclLine(r.Principal, r.Host, r.Operation, r.Permission, r.Type, r.Pattern, r.Name)
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("create %s: %w", strings.ReplaceAll(line, "\t", " "), userErr(r.Err, r.ErrMessage)))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created %s\n", strings.ReplaceAll(line, "\t", " "))
			}
			return errors.Join(errs...)
		},
	}
	cf.addResource(create)
	cf.addEntry(create, true)
	create.Flags().StringVar(&cf.pattern, "resource-pattern-type", "literal", "literal (the exact name; * is every name) or prefixed (every name starting with it)")

	var lf aclFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List ACLs, all of them or those matching the options given",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := lf.builder(false)
			if err != nil {
				return err
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.DescribeACLs(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("list ACLs: %w", conn.explain(err))
			}
			var lines []string
			var errs []error
			for _, r := range res {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("list ACLs: %w", userErr(r.Err, r.ErrMessage)))
					continue
				}
				for _, d := range r.Described {
					lines = append(lines, aclLine(d.Principal, d.Host, d.Operation, d.Permission, d.Type, d.Pattern, d.Name))
				}
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			slices.Sort(lines)
			lines = slices.Compact(lines) // several filters may match one ACL
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PRINCIPAL\tHOST\tPERMISSION\tOPERATION\tRESOURCE")
			for _, l := range lines {
				fmt.Fprintln(w, l)
			}
			return w.Flush()
		},
	}
	lf.addResource(list)
	lf.addEntry(list, false)
	list.Flags().StringArrayVar(&lf.principals, "principal", nil, "list the ACLs of this principal, allowed or denied (repeatable)")
	list.Flags().StringVar(&lf.pattern, "resource-pattern-type", "any", "any (the exact names given, any pattern), match (every ACL that applies to the names given), literal or prefixed")

	var df aclFlags
	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete the ACLs matching the options given (a resource is required)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !df.hasResource() {
				return errors.New("name the resource whose ACLs to delete: --topic, --group, --transactional-id or --cluster (--topic '*' --resource-pattern-type any for all topics' ACLs)")
			}
			b, err := df.builder(false)
			if err != nil {
				return err
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.DeleteACLs(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("delete ACLs: %w", conn.explain(err))
			}
			var errs []error
			n := 0
			for _, r := range res {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("delete ACLs: %w", userErr(r.Err, r.ErrMessage)))
					continue
				}
				for _, d := range r.Deleted {
					line := strings.ReplaceAll(aclLine(d.Principal, d.Host, d.Operation, d.Permission, d.Type, d.Pattern, d.Name), "\t", " ")
					if d.Err != nil {
						errs = append(errs, fmt.Errorf("delete %s: %w", line, userErr(d.Err, d.ErrMessage)))
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", line)
					n++
				}
			}
			if n == 0 && len(errs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no ACL matched")
			}
			return errors.Join(errs...)
		},
	}
	df.addResource(del)
	df.addEntry(del, false)
	del.Flags().StringVar(&df.pattern, "resource-pattern-type", "literal", "literal or prefixed (ACLs of exactly that pattern), any (the exact names, any pattern) or match (every ACL that applies to the names: use with care)")

	cmd.AddCommand(create, list, del)
	return cmd
}
