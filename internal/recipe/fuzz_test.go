package recipe

import (
	"testing"
)

// The blob is untrusted: whatever its bytes, a Prober neither panics nor
// works past its limits, and what it reports for people is printable.
func FuzzProber(f *testing.F) {
	layer := corpus(40 << 10)
	f.Add(recompressed(&testing.T{}, goRecipe(6), layer), layer[:1000])
	f.Add(recompressed(&testing.T{}, Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: "v1.15.12", Level: 2, Zstd: &ZstdParams{Checksum: true}}, layer), layer)
	f.Add([]byte{0x1f, 0x8b, 8, 0x1e, 0, 0, 0, 0, 0, 255, 2, 0, 'a', 'b', 'n', 0, 'c', 0, 1, 2}, []byte("x"))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0xe4, 1, 2, 3, 4, 5, 6, 7, 8}, []byte{})
	f.Fuzz(func(t *testing.T, blob, tar []byte) {
		res := probeBytes(t, blob, tar, WithMaxPrefix(16<<10), WithEvidence(1024), WithWorkLimit(64<<10))
		if res.Work > 64<<10+int64(len(res.Candidates)+1)*(16<<10) {
			t.Errorf("work %d past the limits", res.Work)
		}
		for _, r := range res.Candidates {
			if err := r.Validate(); err != nil {
				t.Errorf("candidate %s: %v", r, err)
			}
			for _, c := range r.String() + res.Reason {
				if c < 0x20 || c == 0x7f {
					t.Errorf("control character in %q", r.String()+res.Reason)
				}
			}
		}
	})
}
