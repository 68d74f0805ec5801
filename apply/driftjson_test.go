package apply

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// --json keeps names exact: a path that is not valid UTF-8 comes with
// pathRaw, its bytes in base64, so that two names differing only in
// invalid bytes stay apart and round-trip. Before, both \xff\xfe and
// \xfe\xff came out as "\ufffd\ufffd".
func TestDriftJSONKeepsBytes(t *testing.T) {
	a := mustApplyRecorded(t, [][]byte{tarOf(t, F("ok", "ok", 0644))})
	for _, n := range []string{"\xff\xfe", "\xfe\xff", "caf\xc3\xa9"} {
		os.WriteFile(filepath.Join(a.target, n), []byte("x"), 0644)
	}
	got, err := Verify(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"path":"café","kind":"appeared"},` +
		`{"path":"\ufffd\ufffd","pathRaw":"/v8=","kind":"appeared"},` +
		`{"path":"\ufffd\ufffd","pathRaw":"//4=","kind":"appeared"}]`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	var back []Drift
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, got) {
		t.Errorf("round trip: %q %v, want %q", back, err, got)
	}
}
