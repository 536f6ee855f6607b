package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startBroker runs `sluice broker` (with the extra flags given) as a child
// process on a kernel-chosen port and returns its address; the test stops
// it with SIGTERM.
func startBroker(t *testing.T, data string, extra ...string) (addr string, stop func() error) {
	t.Helper()
	cmd := sluice(t, append([]string{"broker", "--data", data, "--listen", "127.0.0.1:0"}, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		t.Fatal("sluice broker did not log its address")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return addr, func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		return cmd.Wait()
	}
}

// run runs a sluice subcommand against addr and returns its stdout.
func runTool(t *testing.T, addr, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := sluice(t, args...)
	cmd.Env = append(cmd.Env, "SLUICE_BOOTSTRAP="+addr)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), &toolError{err, errb.String()}
		}
		return out.String(), nil
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sluice %v did not finish", args)
		return "", nil
	}
}

type toolError struct {
	err    error
	stderr string
}

func (e *toolError) Error() string { return e.err.Error() + ": " + e.stderr }

func TestBrokerAndConsoleTools(t *testing.T) {
	data := t.TempDir()
	addr, stop := startBroker(t, data)

	steps := []struct {
		name    string
		stdin   string
		args    []string
		want    string // stdout must contain
		wantErr string // or the command must fail saying this
	}{
		{name: "create", args: []string{"topic", "create", "clicks", "--partitions", "3"}, want: "created topic clicks"},
		{name: "create rf 3", args: []string{"topic", "create", "other", "--replication-factor", "3"}, wantErr: "use replication-factor 1 or an external Kafka cluster"},
		{name: "list", args: []string{"topic", "list"}, want: "clicks\n"},
		{name: "produce keyed", stdin: "u1:a\nu2:b\nu1:c\n", args: []string{"produce", "--topic", "clicks", "--key-separator", ":"}},
		{name: "produce acks=1", stdin: "d\ne\n", args: []string{"produce", "--topic", "clicks", "--acks", "1"}},
		{name: "produce bad acks", args: []string{"produce", "--topic", "clicks", "--acks", "2"}, wantErr: "use 0, 1 or all"},
		{name: "describe", args: []string{"topic", "describe", "clicks"}, want: "3 partitions"},
		{name: "consume keys", args: []string{"consume", "--topic", "clicks", "--from-beginning", "--max-messages", "5", "--print-key"}, want: "u1\ta"},
		{name: "consume without topic", args: []string{"consume"}, wantErr: "--topic is required"},
		{name: "offset without partition", args: []string{"consume", "--topic", "clicks", "--offset", "1"}, wantErr: "--offset needs --partition"},
		{name: "partition out of range", args: []string{"consume", "--topic", "clicks", "--partition", "7"}, wantErr: "has partitions 0 to 2"},
		{name: "consume missing topic", args: []string{"consume", "--topic", "nope"}, wantErr: "UNKNOWN_TOPIC_OR_PARTITION"},
		{name: "produce missing topic", stdin: "x\n", args: []string{"produce", "--topic", "nope"}, wantErr: "sluice topic create nope"},
		{name: "delete", args: []string{"topic", "delete", "clicks"}, want: "deleted topic clicks"},
		{name: "delete again", args: []string{"topic", "delete", "clicks"}, wantErr: "UNKNOWN_TOPIC_OR_PARTITION"},
	}
	for _, s := range steps {
		out, err := runTool(t, addr, s.stdin, s.args...)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%s: got %v, want an error saying %q", s.name, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !strings.Contains(out, s.want) {
			t.Fatalf("%s: output %q does not contain %q", s.name, out, s.want)
		}
		// Keyed lines go to one partition by key, so u1's records keep
		// their order.
		if s.name == "consume keys" && strings.Index(out, "u1\ta") > strings.Index(out, "u1\tc") {
			t.Fatalf("records of key u1 out of order: %q", out)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("sluice broker did not exit 0 on SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, ".clean-shutdown")); err != nil {
		t.Fatalf("no clean shutdown recorded: %v", err)
	}
}

func TestConsumeFromPartitionOffset(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	if _, err := runTool(t, addr, "", "topic", "create", "one", "--partitions", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, addr, "a\nb\nc\nd\n", "produce", "--topic", "one"); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, addr, "", "consume", "--topic", "one", "--partition", "0", "--offset", "2", "--max-messages", "2")
	if err != nil {
		t.Fatal(err)
	}
	if out != "c\nd\n" {
		t.Fatalf("consumed %q from offset 2", out)
	}
}

func TestGroupConsoleTools(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := runTool(t, addr, stdin, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	run("", "topic", "create", "g", "--partitions", "2")
	run("a:1\nb:2\nc:3\nd:4\ne:5\nf:6\n", "produce", "--topic", "g", "--key-separator", ":")
	first := run("", "consume", "--topic", "g", "--group", "readers", "--from-beginning", "--max-messages", "4")
	if n := strings.Count(first, "\n"); n != 4 {
		t.Fatalf("first consume printed %d lines", n)
	}
	// The group resumes after what it committed: the next member sees
	// exactly the two records not printed yet.
	second := run("", "consume", "--topic", "g", "--group", "readers", "--from-beginning", "--max-messages", "2")
	all := strings.Fields(first + second)
	sort.Strings(all)
	if strings.Join(all, ",") != "1,2,3,4,5,6" {
		t.Fatalf("two members of one group printed %v, want each record once", all)
	}
	if out := run("", "group", "list"); !strings.Contains(out, "readers") || !strings.Contains(out, "Empty") {
		t.Fatalf("group list: %q", out)
	}
	desc := run("", "group", "describe", "readers")
	if !strings.Contains(desc, "state Empty") || !strings.Contains(desc, "0    total lag") && !strings.Contains(desc, "0  total lag") {
		t.Fatalf("group describe: %q", desc)
	}
	if _, err := runTool(t, addr, "", "group", "describe", "nobody"); err == nil {
		t.Fatal("describing a group that does not exist must fail")
	}
	if out := run("", "group", "delete", "readers"); !strings.Contains(out, "deleted group readers") {
		t.Fatalf("group delete: %q", out)
	}
	if out := run("", "group", "list"); strings.Contains(out, "readers") {
		t.Fatalf("deleted group still listed: %q", out)
	}
	if _, err := runTool(t, addr, "", "consume", "--topic", "g", "--group", "x", "--partition", "0"); err == nil ||
		!strings.Contains(err.Error(), "drop --partition") {
		t.Fatalf("--group with --partition: %v", err)
	}
}
