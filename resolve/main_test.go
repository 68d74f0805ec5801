package resolve_test

import (
	"os"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// The tests that only push and pull share one registry process.
func TestMain(m *testing.M) {
	os.Exit(testregistry.Main(m))
}
