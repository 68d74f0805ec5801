package testutil

import (
	"os"
	"strings"
)

// ChildEnv is the environment for the test binary re-run as a child
// process (in a namespace, as another user, to be killed): os.Environ
// with extra added, and the race detector told not to wait at exit. A
// binary built with -race sleeps a second when it exits so that other
// threads can still report (the runtime's atexit_sleep_ms), which made
// every child of the short tier a second longer; races are reported as
// they are found, and the exit status still says so.
func ChildEnv(extra ...string) []string {
	env := make([]string, 0, len(os.Environ())+len(extra)+1)
	race := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			race = strings.TrimSpace(v + " " + race)
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "GORACE="+race), extra...)
}
