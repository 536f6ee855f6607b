package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// SCRAM iteration bounds: Kafka refuses fewer than 4096 (RFC 7677's
// minimum for SCRAM-SHA-256) and more than 16384 (each authentication
// costs the broker that many hashes). The default is twice the minimum,
// the cost of a login being paid once per connection.
const (
	minSCRAMIterations     = 4096
	maxSCRAMIterations     = 16384
	defaultSCRAMIterations = 8192
)

// newUserCmd is `sluice user list|set|delete`: SCRAM credentials through
// DescribeUserScramCredentials and AlterUserScramCredentials, so it works
// against the built-in broker and any Kafka (kafka-configs.sh
// --entity-type users does the same).
func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "List, set and delete SCRAM users",
		Long: `List, set and delete the SCRAM credentials of users (like kafka-configs.sh
--entity-type users). The broker stores a salted hash, never the password;
passwords are read from a file or standard input, never from the command line,
where every user of the machine could read them in ps.`,
	}
	conn := addKafkaFlags(cmd)

	list := &cobra.Command{
		Use:   "list [NAME...]",
		Short: "List users with their SCRAM mechanisms and iterations",
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			users, err := adm.DescribeUserSCRAMs(cmd.Context(), args...)
			if err != nil {
				return fmt.Errorf("list users: %w", err)
			}
			names := make([]string, 0, len(users))
			for n := range users {
				names = append(names, n)
			}
			slices.Sort(names)
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tMECHANISM\tITERATIONS")
			var errs []error
			for _, n := range names {
				u := users[n]
				if errors.Is(u.Err, kerr.ResourceNotFound) {
					errs = append(errs, fmt.Errorf("user %s has no SCRAM credentials", n))
					continue
				}
				if u.Err != nil {
					errs = append(errs, fmt.Errorf("user %s: %w", n, userErr(u.Err, u.ErrMessage)))
					continue
				}
				for _, c := range u.CredInfos {
					fmt.Fprintf(w, "%s\t%s\t%d\n", n, c.Mechanism, c.Iterations)
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			return errors.Join(errs...)
		},
	}

	var (
		mechanism    string
		iterations   int32
		passwordFile string
	)
	set := &cobra.Command{
		Use:   "set NAME [--mechanism M] [--iterations N] [--password-file FILE]",
		Short: "Create a user, or change its password, for one SCRAM mechanism",
		Long: `Create user NAME, or replace its credential, for one SCRAM mechanism. The
password is the first line of --password-file, or of standard input (typed at a
terminal without echo, or piped: printf '%s\n' "$PW" | sluice user set NAME).
A user who authenticates with both SCRAM-SHA-256 and SCRAM-SHA-512 is set once
for each.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			mech, err := scramMechanism(mechanism)
			if err != nil {
				return err
			}
			if iterations < minSCRAMIterations || iterations > maxSCRAMIterations {
				return fmt.Errorf("--iterations %d: use %d to %d", iterations, minSCRAMIterations, maxSCRAMIterations)
			}
			var pass string
			if passwordFile != "" {
				pass, err = readSecretFile(passwordFile)
				if err != nil {
					return fmt.Errorf("--password-file: %w", err)
				}
			} else {
				pass, err = readPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), "password for "+name+": ")
				if err != nil {
					return err
				}
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			// What was there, to say what changed.
			before, err := adm.DescribeUserSCRAMs(cmd.Context(), name)
			if err != nil {
				return fmt.Errorf("describe user %s: %w", name, err)
			}
			var had *kadm.CredInfo
			for _, c := range before[name].CredInfos {
				if c.Mechanism == mech {
					had = &c
				}
			}
			resp, err := adm.AlterUserSCRAMs(cmd.Context(), nil, []kadm.UpsertSCRAM{{
				User: name, Mechanism: mech, Iterations: iterations, Password: pass,
			}})
			if err != nil {
				return fmt.Errorf("set user %s: %w", name, err)
			}
			if r, ok := resp[name]; !ok {
				return fmt.Errorf("set user %s: the broker did not answer for it", name)
			} else if r.Err != nil {
				return fmt.Errorf("set user %s: %w", name, userErr(r.Err, r.ErrMessage))
			}
			out := cmd.OutOrStdout()
			if had == nil {
				fmt.Fprintf(out, "user %s: added %s credential (%d iterations)\n", name, mech, iterations)
			} else {
				fmt.Fprintf(out, "user %s: replaced %s credential (%d iterations, was %d)\n", name, mech, iterations, had.Iterations)
			}
			return nil
		},
	}
	set.Flags().StringVar(&mechanism, "mechanism", "SCRAM-SHA-512", "SCRAM-SHA-256 or SCRAM-SHA-512")
	set.Flags().Int32Var(&iterations, "iterations", defaultSCRAMIterations, fmt.Sprintf("hash iterations, %d to %d: more make a stolen hash costlier to crack and every login slower", minSCRAMIterations, maxSCRAMIterations))
	set.Flags().StringVar(&passwordFile, "password-file", "", "read the password from this file's first line instead of stdin")

	var delMechanism string
	del := &cobra.Command{
		Use:   "delete NAME... [--mechanism M]",
		Short: "Delete users' SCRAM credentials (all their mechanisms unless --mechanism)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var only kadm.ScramMechanism
			if delMechanism != "" {
				m, err := scramMechanism(delMechanism)
				if err != nil {
					return err
				}
				only = m
			}
			adm, done, err := conn.admin(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			users, err := adm.DescribeUserSCRAMs(cmd.Context(), args...)
			if err != nil {
				return fmt.Errorf("describe users: %w", err)
			}
			var dels []kadm.DeleteSCRAM
			var errs []error
			for _, n := range args {
				u, ok := users[n]
				if ok && u.Err != nil && !errors.Is(u.Err, kerr.ResourceNotFound) {
					errs = append(errs, fmt.Errorf("user %s: %w", n, userErr(u.Err, u.ErrMessage)))
					continue
				}
				found := false
				for _, c := range u.CredInfos {
					if only == 0 || c.Mechanism == only {
						dels = append(dels, kadm.DeleteSCRAM{User: n, Mechanism: c.Mechanism})
						found = true
					}
				}
				if !found {
					what := "no SCRAM credentials"
					if only != 0 {
						what = "no " + only.String() + " credential"
					}
					errs = append(errs, fmt.Errorf("user %s has %s; sluice user list shows the users there are", n, what))
				}
			}
			if len(dels) > 0 {
				resp, err := adm.AlterUserSCRAMs(cmd.Context(), dels, nil)
				if err != nil {
					return fmt.Errorf("delete users: %w", err)
				}
				for _, d := range dels {
					if r, ok := resp[d.User]; ok && r.Err != nil {
						errs = append(errs, fmt.Errorf("delete user %s: %w", d.User, userErr(r.Err, r.ErrMessage)))
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "user %s: deleted %s credential\n", d.User, d.Mechanism)
				}
			}
			return errors.Join(errs...)
		},
	}
	del.Flags().StringVar(&delMechanism, "mechanism", "", "delete only this mechanism's credential: SCRAM-SHA-256 or SCRAM-SHA-512")

	cmd.AddCommand(list, set, del)
	return cmd
}

// scramMechanism parses a mechanism name as Kafka writes it, in any case.
func scramMechanism(s string) (kadm.ScramMechanism, error) {
	switch strings.ToUpper(s) {
	case "SCRAM-SHA-256":
		return kadm.ScramSha256, nil
	case "SCRAM-SHA-512":
		return kadm.ScramSha512, nil
	}
	return 0, fmt.Errorf("--mechanism %q: use SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN users are configured on the broker, not stored)", s)
}

// userErr adds the broker's message to a per-user error code.
func userErr(err error, msg string) error {
	if msg != "" && !strings.Contains(err.Error(), msg) {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// readPassword reads a password from in: without echo when in is a
// terminal (prompting on prompt), else the first line of what is piped.
func readPassword(in io.Reader, prompt io.Writer, question string) (string, error) {
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		pass, err := readNoEcho(f, func() { fmt.Fprint(prompt, question) })
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		if pass == "" {
			return "", errors.New("empty password: type one, or give --password-file")
		}
		return pass, nil
	}
	return readSecret(in, "stdin")
}
