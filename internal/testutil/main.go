package testutil

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// Main runs a test package's tests, then each of done (what stops the
// processes the tests shared), then removes BinaryDir and the scratch
// directory, and returns the tests' exit code, for TestMain:
// os.Exit(testutil.Main(m)). See NoRaceExitWait and ShortScratch.
func Main(m *testing.M, done ...func()) int {
	NoRaceExitWait()
	flag.Parse()
	removeScratch := ShortScratch()
	code := m.Run()
	for _, f := range done {
		f()
	}
	removeBinaryDir()
	removeScratch()
	return code
}

// NoRaceExitWait makes a test binary built with -race exit as soon as its
// tests are done. The race runtime sleeps a second at exit so that other
// threads can still report (its atexit_sleep_ms), and any Go program has
// other threads: each of the 20 test packages took a second longer, about
// 10 s of the short tier on two cores (issue #15's budget is 60 s). Races
// are reported as they are found, a test during which one happened fails,
// and the exit status still says so; only a race in a goroutine still
// running after the last test goes unseen, as it does with
// GORACE=atexit_sleep_ms=0.
//
// The flag is read once, when the binary starts, so the binary runs
// itself again with it in GORACE (the same process: exec). A GORACE that
// already names atexit_sleep_ms is the developer's choice and is kept.
// Call it first in TestMain, before anything is written or started.
func NoRaceExitWait() {
	if !raceEnabled {
		return
	}
	race := os.Getenv("GORACE")
	if strings.Contains(race, "atexit_sleep_ms") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return // not worth failing the tests for: they only wait longer
	}
	env := ChildEnv()
	err = syscall.Exec(exe, os.Args, env)
	// Exec returns only when it failed; run the tests here, as before.
	fmt.Fprintf(os.Stderr, "testutil: running without atexit_sleep_ms=0: %v\n", err)
}
