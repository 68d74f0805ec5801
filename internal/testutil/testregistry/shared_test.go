package testregistry_test

import (
	"net/http"
	"os"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

func TestMain(m *testing.M) {
	os.Exit(testregistry.Main(m))
}

// Shared starts one registry for the test binary: every test that asks
// gets the same running process, which Main stops after the tests.
func TestShared(t *testing.T) {
	t.Parallel()
	a := testregistry.Shared(t)
	var b *testregistry.Registry
	t.Run("another test", func(t *testing.T) { b = testregistry.Shared(t) })
	if a != b || a.PID == 0 {
		t.Fatalf("two registries: %+v and %+v", a, b)
	}
	resp, err := http.Get(a.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
}
