package testutil

import "math/rand/v2"

// RandomBytes returns n bytes drawn from rng: incompressible test data
// that a seeded rng makes again on every run.
func RandomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
