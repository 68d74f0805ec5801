package resolve

import (
	"github.com/ocifetch/ocifetch/source"
)

// Mirror is source.Mirror: one host that serves a registry's content,
// configured in containerd's hosts.toml format (see docs/mirrors.md) or
// with WithMirrors.
type Mirror = source.Mirror
