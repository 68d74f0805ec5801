package atomicfile

import (
	"os"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

func TestMain(m *testing.M) {
	os.Exit(testutil.Main(m))
}
