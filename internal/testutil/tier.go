package testutil

import "testing"

// Two tiers run the same tests: `go test -short -race ./...`, what a
// developer runs while working (about a minute on two cores), and the
// full run of scripts/test.sh, what CI runs. A heavy test runs a smaller
// case in the short tier, chosen with Scale or First; the few whose cost
// is their point (recompressing megabytes under the race detector, a
// second registry and a peer tool, signing beyond the common cases: the
// heavy cases issue #15 lists) are left to the full run with Full, which
// names the short-tier tests that cover their parts.

// Scale returns full, or short under `go test -short`.
func Scale[T any](full, short T) T {
	if testing.Short() {
		return short
	}
	return full
}

// First returns xs, or under `go test -short` its first n elements: a
// table listed commonest first keeps its common cases in the short tier.
func First[T any](xs []T, n int) []T {
	if testing.Short() && len(xs) > n {
		return xs[:n]
	}
	return xs
}

// Full skips t under `go test -short`, saying why it belongs to the full
// run and which short-tier tests cover its parts.
func Full(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("full run only (scripts/test.sh): " + why)
	}
}
