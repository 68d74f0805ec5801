package specschema_test

import (
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/specschema"
)

// A small config that runtime-spec's schema accepts, touching the parts
// defined in each schema file (process, mounts through defs.json, linux).
const valid = `{
  "ociVersion": "1.2.0",
  "process": {
    "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
    "args": ["/bin/hello"],
    "env": ["PATH=/usr/bin:/bin"],
    "cwd": "/"
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "demo",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
  "annotations": {"org.opencontainers.image.os": "linux"}
}`

func TestValidateRuntimeConfig(t *testing.T) {
	t.Parallel()
	if err := specschema.ValidateRuntimeConfig([]byte(valid)); err != nil {
		t.Fatalf("a valid config does not validate: %v", err)
	}
	bad := map[string]string{
		"cwd is a number":       strings.Replace(valid, `"cwd": "/"`, `"cwd": 42`, 1),
		"no ociVersion":         strings.Replace(valid, `"ociVersion": "1.2.0",`, ``, 1),
		"uid is negative":       strings.Replace(valid, `"uid": 1000`, `"uid": -1`, 1),
		"gid through defs.json": strings.Replace(valid, `"additionalGids": [10]`, `"additionalGids": [-10]`, 1),
		"mount destination":     strings.Replace(valid, `"destination": "/proc"`, `"destination": 7`, 1),
		"unknown namespace":     strings.Replace(valid, `{"type": "pid"}`, `{"type": "nope"}`, 1),
		"not JSON":              `{"ociVersion":`,
	}
	for name, doc := range bad {
		if doc == valid {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		err := specschema.ValidateRuntimeConfig([]byte(doc))
		if err == nil {
			t.Errorf("%s: an invalid config validated", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}
