package testutil

import "testing"

// Two tiers run the same tests: `go test -short -race ./...`, what a
// developer runs while working (under a minute on two cores), and the
// full run of scripts/test.sh, what CI runs. A heavy test is never
// skipped in the short tier: it runs a smaller case, chosen with Scale.

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
