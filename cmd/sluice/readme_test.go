package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/flock"
)

// The README's blocks a user pastes are run as pasted: into one bash, in a
// folder laid out like a checkout after `go build` (./sluice and
// examples/), each block whole, in order. They use the fixed ports a user
// gets by default, so the test checks those are free first and stops
// everything the blocks started when it ends, however it ends.

const (
	// pasteBlockTimeout bounds one pasted block. The slowest waits for a
	// broker to start, a consumer-group rebalance (a few seconds) and a
	// few batches; a minute and a half is far above that on a loaded
	// 2-core machine, and below go test's own timeout.
	pasteBlockTimeout = 90 * time.Second
	// pasteStopTimeout bounds the stop at the end: the shell's jobs
	// drain and commit on SIGTERM in well under this; after it the whole
	// process group gets SIGKILL.
	pasteStopTimeout = 20 * time.Second
	// goBuildLine is the README's build line. The test has built sluice
	// already (it is this test binary), so the line is not run: the
	// scratch folder holds no Go sources.
	goBuildLine = "go build -o sluice ./cmd/sluice"
	// portsLockWait bounds how long the test waits for another run of
	// itself (another worktree's go test on the same machine) to free the
	// default ports: that run takes about a minute and a half.
	portsLockWait = 5 * time.Minute
	// doneMarker ends each block's output with the status of its last
	// command; failedMarker is printed by the ERR trap for every command
	// of a block that fails, as a user would see its error.
	doneMarker   = "__readme_block_done__"
	failedMarker = "__readme_block_failed__"
)

// readmePorts are the default ports the blocks use: Kafka's and the
// daemon's HTTP API.
var readmePorts = []string{"127.0.0.1:9092", "127.0.0.1:8080"}

// readmeSection returns the README's text under the heading line h, up to
// the next heading of the same or a higher level.
func readmeSection(t *testing.T, readme, h string) string {
	t.Helper()
	level := strings.Index(h, " ")
	start := strings.Index(readme, "\n"+h+"\n")
	if start < 0 {
		t.Fatalf("README.md has no heading %q", h)
	}
	rest := readme[start+len(h)+2:]
	// A line starting with # inside a ``` block is a shell comment, not
	// a heading.
	inCode := false
	off := 0
	for _, line := range strings.SplitAfter(rest, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if !inCode {
			if n := len(line) - len(strings.TrimLeft(line, "#")); n > 0 && n <= level && strings.HasPrefix(line[n:], " ") {
				return rest[:off]
			}
		}
		off += len(line)
	}
	return rest
}

// shBlocks returns the ```sh blocks of text, in order.
func shBlocks(text string) []string {
	var blocks []string
	for {
		i := strings.Index(text, "```sh\n")
		if i < 0 {
			return blocks
		}
		text = text[i+len("```sh\n"):]
		j := strings.Index(text, "```\n")
		if j < 0 {
			return blocks
		}
		blocks = append(blocks, text[:j])
		text = text[j:]
	}
}

// pasteShell is one bash the blocks are pasted into, so jobs and variables
// of a block are there for the next, as in a terminal.
type pasteShell struct {
	t     *testing.T
	dir   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	n     int // blocks run

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // a line arrived, or the output ended
	ended   bool
	stopped bool
}

// newPasteShell starts bash in dir, in a process group of its own so the
// test can kill whatever the blocks leave running.
func newPasteShell(t *testing.T, dir string) *pasteShell {
	t.Helper()
	s := &pasteShell{t: t, dir: dir, changed: make(chan struct{}, 1)}
	s.cmd = exec.Command("bash", "--noprofile", "--norc")
	s.cmd.Dir = dir
	// The test binary is ./sluice; SLUICE_TEST_MAIN makes it the CLI.
	s.cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1", "SLUICE_BOOTSTRAP=", "NO_COLOR=1")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = w, w
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // the shell and its children hold the write end
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
			s.notify()
		}
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		s.notify()
		r.Close()
	}()
	t.Cleanup(s.stop)
	// Every failing command of a block is reported, as a terminal would
	// show its error, without ending the shell.
	s.send(fmt.Sprintf("trap 'echo %q \"line $LINENO: $BASH_COMMAND\"' ERR\n", failedMarker))
	return s
}

func (s *pasteShell) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *pasteShell) send(text string) {
	if _, err := io.WriteString(s.stdin, text); err != nil {
		s.t.Fatalf("write to the shell: %v", err)
	}
}

// paste runs block as pasted and returns its output and the status of its
// last command; a block that does not finish within pasteBlockTimeout, or
// a command of it that fails, fails the test.
func (s *pasteShell) paste(name, block string) []string {
	s.t.Helper()
	s.n++
	file := filepath.Join(s.dir, fmt.Sprintf(".block-%d.sh", s.n))
	if err := os.WriteFile(file, []byte(block), 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	from := len(s.lines)
	s.mu.Unlock()
	// Sourced, so the block runs in the shell itself; stdin from
	// /dev/null, as a pasted command that read the terminal would not
	// eat the next lines.
	s.send(fmt.Sprintf("source %s </dev/null; echo %s $?\n", file, doneMarker))
	deadline := time.After(pasteBlockTimeout)
	for {
		s.mu.Lock()
		out, ended := s.lines[from:], s.ended
		s.mu.Unlock()
		for i, l := range out {
			if status, ok := strings.CutPrefix(l, doneMarker+" "); ok {
				out = out[:i]
				s.t.Logf("%s: output:\n%s", name, strings.Join(out, "\n"))
				for _, l := range out {
					if strings.Contains(l, "address already in use") {
						// Then the blocks talk to another process's broker
						// or daemon, and every check after is about it.
						s.t.Fatalf("%s: %s\nanother process took a default port after the test checked it (another run of this test from a tree without lockReadmePorts?)", name, l)
					}
					if strings.HasPrefix(l, failedMarker) {
						s.t.Errorf("%s: a command failed: %s", name, strings.TrimPrefix(l, failedMarker+" "))
					}
				}
				if code, _ := strconv.Atoi(status); code != 0 {
					s.t.Errorf("%s: its last command exited %d", name, code)
				}
				return out
			}
		}
		if ended {
			s.t.Fatalf("%s: the shell ended; output:\n%s", name, strings.Join(out, "\n"))
		}
		select {
		case <-s.changed:
		case <-deadline:
			s.t.Fatalf("%s: not done after %s; output:\n%s", name, pasteBlockTimeout, strings.Join(out, "\n"))
		}
	}
}

// stop ends the shell's jobs as a user would (SIGTERM, then wait), then
// kills the process group, whatever is left of it.
func (s *pasteShell) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	io.WriteString(s.stdin, "kill $(jobs -p) 2>/dev/null; wait; exit\n")
	s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(pasteStopTimeout):
		s.t.Errorf("the shell and its jobs did not stop within %s of SIGTERM; killing them", pasteStopTimeout)
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(pasteStopTimeout):
	}
}

// lockReadmePorts makes runs of this test on one machine take turns: they
// all need the default ports. The lock is an flock, so a killed run's lock
// goes with its process.
func lockReadmePorts(t *testing.T) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "sluice-readme-blocks.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	deadline := time.Now().Add(portsLockWait)
	for logged := false; ; logged = true {
		ok, err := flock.TryLock(f)
		if err != nil {
			t.Fatalf("lock %s: %v", path, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("another run of TestREADMEBlocks held %s for %s", path, portsLockWait)
		}
		if !logged {
			t.Logf("waiting for another run of this test to free the default ports (%s)", path)
		}
		time.Sleep(time.Second)
	}
}

// checkoutLike makes a scratch folder laid out like a checkout after the
// README's go build: ./sluice and examples/.
func checkoutLike(t *testing.T) string {
	t.Helper()
	lockReadmePorts(t)
	for _, addr := range readmePorts {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is in use (%v): the README's blocks use the default ports; stop what listens there", addr, err)
		}
		l.Close()
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "sluice")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "examples"), os.DirFS("../../examples")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withoutBuild drops the README's go build line from block, and fails if
// the block has another go command the scratch folder cannot run.
func withoutBuild(t *testing.T, block string) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(block, "\n") {
		if strings.TrimSpace(l) == goBuildLine {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(l), "go ") {
			t.Fatalf("a pasted block runs %q: the test cannot run go in its scratch folder", l)
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// wantLines fails unless every pattern matches a line of out.
func wantLines(t *testing.T, name string, out []string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		found := false
		for _, l := range out {
			if re.MatchString(l) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no output line matches %s", name, p)
		}
	}
}

// partLines returns the lines of the part files in dir.
func partLines(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Fields(string(b))...)
	}
	return lines
}

func TestREADMEBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers, a daemon and pipelines on the default ports")
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	dir := checkoutLike(t)

	// Kafka in five commands, in a shell of its own that is stopped
	// before the Tour, as its text says.
	five := shBlocks(readmeSection(t, readme, "## Kafka in five commands"))
	if len(five) != 1 {
		t.Fatalf("Kafka in five commands has %d sh blocks, want 1", len(five))
	}
	sh := newPasteShell(t, dir)
	out := sh.paste("five commands", withoutBuild(t, five[0]))
	wantLines(t, "five commands", out, `^created topic lines$`, `^HELLO$`, `^WORLD$`)
	sh.stop()

	tour := readmeSection(t, readme, "## Tour")
	evens := filepath.Join(dir, "examples", "tour", "out", "evens")
	steps := []struct {
		heading string
		check   func(out []string)
	}{
		{"### 1. The broker", func(out []string) {
			wantLines(t, "broker", out, `^created topic clicks$`, `^produced 1000 records to clicks$`, `^1$`, `^2$`, `^3$`)
		}},
		{"### 2. A plugin", func(out []string) {
			wantLines(t, "plugin", out, `^filter$`, `^examples/tour/evens.yaml: ok$`, `^500$`)
			checkEvens(t, partLines(t, evens), 1000)
		}},
		{"### 3. The daemon and its status page", func(out []string) {
			wantLines(t, "daemon", out, `^evens running$`)
			checkEvens(t, partLines(t, evens), 2000)
		}},
		{"### 4. Metrics", func(out []string) {
			wantLines(t, "metrics", out, `^sluice_records_in_total\{pipeline="evens"\} [1-9]`, `^sluice_records_out_total\{pipeline="evens"\} [1-9]`)
		}},
		{"### 5. Scaling out to a second process", func(out []string) {
			wantLines(t, "scaling out", out, `members 2$`, `^produced 1000 records to clicks$`)
			members := 0
			for _, l := range out {
				if strings.HasPrefix(l, "sluice-evens-") && strings.Contains(l, "clicks:") {
					members++
				}
			}
			if members != 2 {
				t.Errorf("scaling out: %d members hold partitions, want 2", members)
			}
			checkEvens(t, partLines(t, evens), 3000)
		}},
		{"### 6. Stop", func([]string) {}},
	}
	sh = newPasteShell(t, dir)
	for _, st := range steps {
		blocks := shBlocks(readmeSection(t, tour, st.heading))
		if len(blocks) != 1 {
			t.Fatalf("%s has %d sh blocks, want 1", st.heading, len(blocks))
		}
		st.check(sh.paste(st.heading, withoutBuild(t, blocks[0])))
		if t.Failed() {
			t.FailNow()
		}
	}
	// The last block stopped everything: the ports are free again.
	for _, addr := range readmePorts {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listens after the Tour's last block", addr)
		}
	}
}

// checkEvens asserts values are the even numbers of 1..n, each once:
// what evens.yaml keeps of what the Tour produced.
func checkEvens(t *testing.T, values []string, n int) {
	t.Helper()
	seen := map[int]bool{}
	for _, v := range values {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || i > n || i%2 != 0 {
			t.Fatalf("out/evens holds %q, not an even number of 1..%d", v, n)
		}
		if seen[i] {
			t.Fatalf("out/evens holds %d twice", i)
		}
		seen[i] = true
	}
	if len(seen) != n/2 {
		t.Errorf("out/evens holds %d values, want the %d even numbers of 1..%d", len(seen), n/2, n)
	}
}
