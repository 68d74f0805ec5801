package testutil

import (
	"flag"
	"runtime"
	"strconv"
)

// WaitingParallel is for the TestMain of a package whose tests spend their
// time waiting on the processes they start (the CLI, registries, cosign)
// rather than computing: it parses the flags and, unless -parallel was
// given on the command line, runs n tests at once where GOMAXPROCS would
// allow fewer.
func WaitingParallel(n int) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given && runtime.GOMAXPROCS(0) < n {
		flag.Set("test.parallel", strconv.Itoa(n))
	}
}
