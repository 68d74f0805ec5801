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

// FuzzRebuild applies arbitrary streams with a state directory: whenever
// the apply succeeds, the layer must rebuild to exactly the bytes given and
// the tree must verify clean.
func FuzzRebuild(f *testing.F) {
	f.Add(sampleTar(f))
	f.Add(tarOf(f, F("x", "one", 0644), F("x", "two", 0644), H("h", "x"), F("x", "three", 0644)))
	f.Add(tarOf(f, D("d", 0755), F("d/f", "f", 0644), F("d", "file now", 0600), W("", "nothing")))
	f.Add(tarOf(f, F("a", "aaa", 0644))[:512+3])
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := applyRecorded(t, [][]byte{data}, WithDevices(DevicesSkip))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Rebuild(context.Background(), a.state, a.target, sha(data), &out); err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("rebuilt %d bytes, want %d", out.Len(), len(data))
		}
		if d, err := Verify(context.Background(), a.state, a.target); err != nil || len(d) != 0 {
			t.Fatalf("verify: %v %v", d, err)
		}
	})
}
