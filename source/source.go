package source

import (
	"context"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A Source turns descriptors into bytes. It is the seam between resolving
// and fetching: the fetch stage asks a Source for content and verifies what
// comes back, without caring whether it talks to a registry or reads a
// directory.
//
// A Source does not verify content; callers do. Errors carry errdefs kinds
// (not_found, unauthorized, network, ...).
type Source interface {
	// Reference is the normalized reference the source was opened with,
	// e.g. "docker.io/library/alpine:3.20" or "oci:/abs/dir:tag".
	Reference() string

	// Root returns the descriptor that the reference names: the image index
	// or manifest to start resolving from.
	Root(ctx context.Context) (ocispec.Descriptor, error)

	// Fetch opens the content of desc from its start. The registry source
	// reads an index, manifest or config whole before it returns, under
	// the per-document deadline and with retries (see Deadlines and
	// RetryPolicy); larger content streams as with FetchAt.
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)

	// FetchAt opens the content of desc from offset. The returned start is
	// where the stream really begins: offset when the source honoured the
	// request, 0 when it could only serve the whole content, in which case
	// the caller must start over. It makes one attempt: the caller, which
	// keeps what already arrived, retries and resumes.
	FetchAt(ctx context.Context, desc ocispec.Descriptor, offset int64) (rc io.ReadCloser, start int64, err error)
}

// Mirrored is implemented by sources that can fetch the same content from
// several hosts (mirrors first, then the upstream). Endpoints returns one
// Source per host that may serve content by digest (capability "pull"), in
// the order they should be tried. A caller that finds bad content from one
// endpoint (digest or size mismatch, short body) moves on to the next.
type Mirrored interface {
	Source
	Endpoints() []Source
}

// Name says where a source's bytes come from, for messages: the host URL
// of a registry endpoint (never with user info), else the reference.
func Name(s Source) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return s.Reference()
}
