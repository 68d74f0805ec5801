package policy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/policy"
)

// A trust policy as ocifetch.WithVerifier takes it. This one rejects
// everything but the layouts of testdata/layouts, which it accepts without
// a signature; a registry scope would name a cosign key instead:
//
//	"docker": {"registry.example.com/app": [{"type": "sigstoreSigned",
//	    "keyPath": "/etc/pki/cosign.pub", "signedIdentity": {"type": "matchRepository"}}]}
//
// (see docs/signatures.md for a walk-through with cosign).
func ExampleParse() {
	work, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(work)
	layouts, _ := filepath.Abs("../testdata/layouts")
	doc := fmt.Sprintf(`{
		"default": [{"type": "reject"}],
		"transports": {"oci": {%q: [{"type": "insecureAcceptAnything"}]}}
	}`, layouts)
	pol, err := policy.Parse([]byte(doc), "example.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	linux := ocifetch.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	_, err = ocifetch.Unpack(ctx, "oci:../testdata/layouts/multiarch:latest", filepath.Join(work, "rootfs"),
		ocifetch.WithStore(filepath.Join(work, "store")), ocifetch.WithVerifier(pol), linux)
	fmt.Println("testdata layout:", err)

	// A copy of it elsewhere is outside the scope: the default rejects it.
	other, _ := os.MkdirTemp("", "example-layout-")
	defer os.RemoveAll(other)
	if err := os.CopyFS(other, os.DirFS(filepath.Join(layouts, "multiarch"))); err != nil {
		fmt.Println(err)
		return
	}
	_, err = ocifetch.Pull(ctx, "oci:"+other+":latest", ocifetch.WithStore(filepath.Join(work, "store")), ocifetch.WithVerifier(pol), linux)
	fmt.Println("another layout:", errdefs.KindOf(err))
	// Output:
	// testdata layout: <nil>
	// another layout: untrusted
}
