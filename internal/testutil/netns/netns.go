// Package netns runs a test inside network and mount namespaces of its
// own, with addresses the host does not have: "public" ones from
// TEST-NET-3 (203.0.113.0/24, which address checks treat as public) and
// private ones from 10.77.0.0/24, on a veth pair inside the namespace, and
// a hosts file of the test's choosing. Address rules (what may be dialed
// with or without credentials) can then be tested against real
// connections without touching the host's interfaces or resolver.
//
//	func TestX(t *testing.T) {
//		if !netns.Run(t, map[string]string{"tokens.test": netns.Private1}) {
//			return // the parent: the test ran in a child, its result reported
//		}
//		... // the child, inside the namespaces
//	}
//
// It needs root and unshare(1). Without them the test is skipped, except
// when $CI is set: CI runs as root, and must never pass by skipping.
package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// Addresses inside the namespace.
const (
	Public1  = "203.0.113.1"
	Public2  = "203.0.113.2"
	Private1 = "10.77.0.1"
	Private2 = "10.77.0.2"
)

const envChild = "OCIFETCH_NETNS_CHILD"

// Run reports whether the caller is the child that must run the test body.
// In the parent it runs the test again in a child process inside new
// namespaces and reports the child's result; in the child it sets up the
// interfaces and the hosts file (name → address) first.
func Run(t *testing.T, hosts map[string]string) bool {
	t.Helper()
	if os.Getenv(envChild) == t.Name() {
		setup(t, hosts)
		return true
	}
	unshare, err := exec.LookPath("unshare")
	if err == nil && os.Geteuid() != 0 {
		err = fmt.Errorf("not root")
	}
	if err == nil {
		_, err = exec.LookPath("ip")
	}
	if err != nil {
		testutil.Missing(t, "netns: %v", err)
	}
	cmd := exec.Command(unshare, "--net", "--mount", "--propagation", "private", "--",
		os.Args[0], "-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.count", "1", "-test.v", "-test.timeout", "5m")
	cmd.Env = testutil.ChildEnv(envChild + "=" + t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a network namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in a network namespace, the test did not pass:\n%s", out)
	}
	t.Logf("in a network namespace:\n%s", out)
	return false
}

func setup(t *testing.T, hosts map[string]string) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "veth0", "type", "veth", "peer", "name", "veth1"},
		{"addr", "add", Public1 + "/24", "dev", "veth0"},
		{"addr", "add", Private1 + "/24", "dev", "veth0"},
		{"addr", "add", Public2 + "/24", "dev", "veth1"},
		{"addr", "add", Private2 + "/24", "dev", "veth1"},
		{"link", "set", "veth0", "up"},
		{"link", "set", "veth1", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var lines []string
	for name, addr := range hosts {
		lines = append(lines, addr+" "+name)
	}
	sort.Strings(lines)
	f := filepath.Join(t.TempDir(), "hosts")
	body := "127.0.0.1 localhost\n::1 localhost\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// The mount namespace is private: this hides the host's /etc/hosts
	// from this process only.
	if err := unix.Mount(f, "/etc/hosts", "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting a hosts file: %v", err)
	}
}
