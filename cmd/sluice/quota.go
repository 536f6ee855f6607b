package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// newQuotaCmd is `sluice quota describe|alter`, kafka-configs.sh's client
// quota options, through DescribeClientQuotas and AlterClientQuotas: it
// works against the built-in broker and any Kafka.
func newQuotaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quota",
		Short: "Describe and change client quotas (like kafka-configs.sh --entity-type users/clients)",
		Long: `Describe and change client quotas. A quota is set on a user (the principal's
name without "User:"; ANONYMOUS for clients that do not authenticate), a client
id, a user and client id together, or an IP; --user-default, --client-default and
--ip-default name the default for every user, client id or IP. A client gets the
most specific quota that matches it, in Kafka's order. Keys: producer_byte_rate
and consumer_byte_rate (bytes per second), request_percentage,
controller_mutation_rate, and connection_creation_rate (for IPs). Describing
needs DESCRIBE_CONFIGS on the cluster, changing ALTER_CONFIGS.

  sluice quota alter --user alice --add producer_byte_rate=1048576
  sluice quota alter --user alice --client-default --add consumer_byte_rate=2097152
  sluice quota alter --client-id batch-job --delete producer_byte_rate
  sluice quota describe --user alice`,
	}
	conn := addKafkaFlags(cmd)

	var df quotaEntityFlags
	var strict bool
	describe := &cobra.Command{
		Use:   "describe",
		Short: "List client quotas: all of them, or those of the entities named",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			components, err := df.filter()
			if err != nil {
				return err
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			qs, err := adm.DescribeClientQuotas(cmd.Context(), strict, components)
			if err != nil {
				var ke *kerr.Error
				if !errors.As(err, &ke) { // not the broker's answer
					err = conn.explain(err)
				}
				return fmt.Errorf("describe client quotas: %w", quotaHint(err, "DescribeConfigs"))
			}
			type row struct{ user, client, ip, values string }
			var rows []row
			for _, q := range qs {
				r := row{user: "-", client: "-", ip: "-"}
				for _, c := range q.Entity {
					name := "<default>"
					if c.Name != nil {
						name = *c.Name
					}
					switch c.Type {
					case "user":
						r.user = name
					case "client-id":
						r.client = name
					case "ip":
						r.ip = name
					}
				}
				var vals []string
				for _, v := range q.Values {
					vals = append(vals, v.Key+"="+formatQuota(v.Value))
				}
				slices.Sort(vals)
				r.values = strings.Join(vals, ",")
				rows = append(rows, r)
			}
			slices.SortFunc(rows, func(a, b row) int {
				return strings.Compare(a.user+"\x00"+a.client+"\x00"+a.ip, b.user+"\x00"+b.client+"\x00"+b.ip)
			})
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tCLIENT-ID\tIP\tQUOTAS")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.user, r.client, r.ip, r.values)
			}
			return w.Flush()
		},
	}
	df.add(describe, "list the quotas of")
	describe.Flags().BoolVar(&strict, "strict", false, "only entities naming exactly the types given (--user alone leaves out user and client-id pairs)")

	var af quotaEntityFlags
	var add, remove []string
	var validate bool
	alter := &cobra.Command{
		Use:   "alter",
		Short: "Set (--add KEY=VALUE) or remove (--delete KEY) the quotas of one entity",
		Example: `  sluice quota alter --user alice --add producer_byte_rate=1048576,consumer_byte_rate=2097152
  sluice quota alter --user-default --client-id reports --add consumer_byte_rate=524288
  sluice quota alter --ip 10.0.0.7 --add connection_creation_rate=10
  sluice quota alter --user alice --delete producer_byte_rate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			entity, err := af.entity()
			if err != nil {
				return err
			}
			var ops []kadm.AlterClientQuotaOp
			var changed []string
			for _, kv := range splitAll(add) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--add %q: use KEY=VALUE, e.g. producer_byte_rate=1048576", kv)
				}
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("--add %s=%s: the value must be a number (bytes per second for the byte rates)", k, v)
				}
				ops = append(ops, kadm.AlterClientQuotaOp{Key: k, Value: f})
				changed = append(changed, "set "+k+"="+formatQuota(f))
			}
			for _, k := range splitAll(remove) {
				ops = append(ops, kadm.AlterClientQuotaOp{Key: k, Remove: true})
				changed = append(changed, "removed "+k)
			}
			if len(ops) == 0 {
				return errors.New("nothing to change: give --add KEY=VALUE or --delete KEY")
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			entries := []kadm.AlterClientQuotaEntry{{Entity: entity, Ops: ops}}
			call := adm.AlterClientQuotas
			if validate {
				call = adm.ValidateAlterClientQuotas
			}
			res, err := call(cmd.Context(), entries)
			switch {
			case err != nil:
				err = conn.explain(err)
			case len(res) != 1:
				err = fmt.Errorf("the broker answered for %d entities, not 1", len(res))
			case res[0].Err != nil:
				err = withMessage(res[0].Err, res[0].ErrMessage)
			}
			if err != nil {
				return fmt.Errorf("alter the quotas of %s: %w", entity, quotaHint(err, "AlterConfigs"))
			}
			verb := "altered"
			if validate {
				verb = "valid, not applied:"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s quotas of %s: %s\n", verb, entity, strings.Join(changed, ", "))
			return nil
		},
	}
	af.add(alter, "change the quotas of")
	alter.Flags().StringArrayVar(&add, "add", nil, "set quota KEY=VALUE (repeatable, or comma-separated)")
	alter.Flags().StringArrayVar(&remove, "delete", nil, "remove quota KEY (repeatable, or comma-separated)")
	alter.Flags().BoolVar(&validate, "validate-only", false, "check the change with the broker without applying it")

	cmd.AddCommand(describe, alter)
	return cmd
}

// quotaEntityFlags name an entity: a user or the default user, a client id
// or the default one, an IP or the default one.
type quotaEntityFlags struct {
	user, client, ip                      string
	userDefault, clientDefault, ipDefault bool
}

func (f *quotaEntityFlags) add(cmd *cobra.Command, what string) {
	fl := cmd.Flags()
	fl.StringVar(&f.user, "user", "", what+" this user (the principal's name without User:)")
	fl.BoolVar(&f.userDefault, "user-default", false, what+" the default user")
	fl.StringVar(&f.client, "client-id", "", what+" this client id")
	fl.BoolVar(&f.clientDefault, "client-default", false, what+" the default client id")
	fl.StringVar(&f.ip, "ip", "", what+" this IP address")
	fl.BoolVar(&f.ipDefault, "ip-default", false, what+" the default IP")
}

// parts are the entity's components named by the flags, a nil name for a
// default.
func (f *quotaEntityFlags) parts() ([]kadm.ClientQuotaEntityComponent, error) {
	var out []kadm.ClientQuotaEntityComponent
	for _, p := range []struct {
		typ, name, flag string
		def             bool
	}{
		{"user", f.user, "user", f.userDefault},
		{"client-id", f.client, "client-id", f.clientDefault},
		{"ip", f.ip, "ip", f.ipDefault},
	} {
		switch {
		case p.name != "" && p.def:
			return nil, fmt.Errorf("--%s and --%s-default name two %s entities; give one", p.flag, strings.TrimSuffix(p.flag, "-id"), p.typ)
		case p.name != "":
			name := p.name
			out = append(out, kadm.ClientQuotaEntityComponent{Type: p.typ, Name: &name})
		case p.def:
			out = append(out, kadm.ClientQuotaEntityComponent{Type: p.typ})
		}
	}
	return out, nil
}

// entity is the one entity alter changes.
func (f *quotaEntityFlags) entity() (kadm.ClientQuotaEntity, error) {
	parts, err := f.parts()
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, errors.New("name the entity: --user U or --user-default, and/or --client-id C or --client-default; or --ip A or --ip-default")
	}
	return parts, nil
}

// filter is what describe matches: the names given exactly, the defaults
// given; nothing matches every entity.
func (f *quotaEntityFlags) filter() ([]kadm.DescribeClientQuotaComponent, error) {
	parts, err := f.parts()
	if err != nil {
		return nil, err
	}
	var out []kadm.DescribeClientQuotaComponent
	for _, p := range parts {
		c := kadm.DescribeClientQuotaComponent{Type: p.Type, MatchName: p.Name, MatchType: 0}
		if p.Name == nil {
			c.MatchType = 1 // the default
		}
		out = append(out, c)
	}
	return out, nil
}

// splitAll splits comma-separated values of a repeatable flag, as
// kafka-configs.sh's --add-config takes them.
func splitAll(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, splitComma(v)...)
	}
	return out
}

// formatQuota writes whole values without a fraction (byte rates).
func formatQuota(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// quotaHint adds what to grant to a cluster authorization failure; op is
// the operation as sluice acl names it.
func quotaHint(err error, op string) error {
	if errors.Is(err, kerr.ClusterAuthorizationFailed) {
		return fmt.Errorf("%w; the principal needs %s on the cluster (sluice acl create --operation %s --cluster)", err, op, op)
	}
	return err
}
