package main

import (
	"regexp"
	"testing"
)

// TestClusterDescribe: `sluice cluster describe` against a `sluice broker`
// process shows its cluster id, its node and what the client may do.
func TestClusterDescribe(t *testing.T) {
	addr, stop := startBroker(t, t.TempDir(), "--node-id", "3")
	defer stop()
	out, err := runTool(t, addr, "", "cluster", "describe")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^cluster id:  sluice-[0-9a-f]{24}$`,
		`(?m)^controller:  3$`,
		`(?m)^you may: .*DESCRIBE`,
		`(?m)^3 +` + regexp.QuoteMeta(addr) + ` +-$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Fatalf("sluice cluster describe printed\n%s\nwhich does not match %s", out, want)
		}
	}
}
