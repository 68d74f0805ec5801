// Package safego keeps a panic in a goroutine of the library from taking
// the embedding program down with it: a goroutine the library starts
// defers Recover, which turns a panic into an error of kind internal that
// the goroutine reports like any other failure. Untrusted input must never
// reach a panic; this is the net under that rule, not a substitute for it.
package safego

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Recover, deferred directly (defer safego.Recover(&err, "fetching layer
// 2")), turns a panic of the current goroutine into *errp: kind internal,
// naming what was being done, the panic's value and where it happened.
func Recover(errp *error, what string) {
	r := recover()
	if r == nil {
		return
	}
	*errp = errdefs.New(errdefs.ErrInternal, "%s: panic: %s at %s (a bug in ocifetch; please report it)",
		what, oneLine(fmt.Sprint(r)), where())
}

// where is the innermost frame of this module below the panic.
func where() string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, "ocifetch/ocifetch") && !strings.HasSuffix(f.File, "internal/safego/safego.go") {
			return fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		if !more {
			return "an unknown place"
		}
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
