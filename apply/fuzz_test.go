package apply

import (
	gotar "archive/tar"
	"bytes"
	"context"
	"testing"
)

// FuzzApplyLayer applies arbitrary streams: whatever they contain, nothing
// may panic and nothing outside the target may change. The seeds are the
// attacks of TestConfinement; `go test -fuzz FuzzApplyLayer ./apply` looks
// for more.
func FuzzApplyLayer(f *testing.F) {
	seeds := [][]e{
		{F("../x", "x", 0644)},
		{S("a", "/"), F("a/x", "x", 0644)},
		{S("a", "../../.."), F("a/x", "x", 0644)},
		{S("a", "../outside/sentinel"), F("a", "x", 0644)},
		{H("h", "../outside/sentinel")},
		{S("d", "../outside"), W("d", "sentinel"), O("d")},
		{S(".", "../outside"), F("sentinel", "x", 0644)},
		{D("d", 0), F("d/f", "", 0), F("d/.wh...", "", 0644)},
		{Dev(gotar.TypeChar, "c", 0600, 1, 3), Fifo("p", 0600), H("h", "c")},
	}
	for _, s := range seeds {
		var b bytes.Buffer
		tw := gotar.NewWriter(&b)
		for _, x := range s {
			h := x.hdr
			tw.WriteHeader(&h)
			tw.Write([]byte(x.body))
		}
		tw.Close()
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		ApplyLayer(context.Background(), s.target, bytes.NewReader(data), WithDevices(DevicesSkip))
		s.checkOutside(t)
	})
}
