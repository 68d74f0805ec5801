package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// An index pushed the way buildx pushes it (an image per platform, each
// with an attestation manifest under unknown/unknown whose layers are
// in-toto statements): validate accepts it and reports the attestations;
// validate --platform checks that platform's manifest only; inspect and
// resolve list the platforms without unknown/unknown and show the
// attestations apart.
func TestCLIE2EBuildxAttestations(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	idx, imgs, atts := testimage.BuildxIndex(t, testimage.Platform{OS: "linux", Arch: "amd64"}, testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"})
	ref := reg.Host + "/e2e/buildx:v1"
	testimage.PushIndex(t, ref, idx)
	env := cliEnv(t)
	amd, _ := imgs[0].Digest()
	arm, _ := imgs[1].Digest()
	att0, _ := atts[0].Digest()
	att1, _ := atts[1].Digest()

	r := mustRun(t, env, "validate", ref)
	want := []string{
		"attestation " + att0.String() + " of linux/amd64: https://slsa.dev/provenance/v0.2, https://spdx.dev/Document",
		"attestation " + att1.String() + " of linux/arm64/v8: https://slsa.dev/provenance/v0.2, https://spdx.dev/Document",
		ref + ": valid",
	}
	if got := lines(r.stdout); !slices.Equal(got, want) {
		t.Errorf("validate:\n%s\nwant:\n%s", r.stdout, strings.Join(want, "\n"))
	}

	var v validateJSON
	runJSON(t, env, &v, "validate", "--json", ref)
	if !v.Valid || len(v.Problems) != 0 || len(v.Attestations) != 2 || v.Attestations[0].Subject != amd.String() || v.Attestations[1].Platform != "linux/arm64/v8" {
		t.Errorf("validate --json: %+v", v)
	}
	v = validateJSON{}
	runJSON(t, env, &v, "validate", "--json", "--platform", "linux/arm64", ref)
	if !v.Valid || len(v.Attestations) != 1 || v.Attestations[0].Subject != arm.String() {
		t.Errorf("validate --platform linux/arm64: %+v", v)
	}
	wantExit(t, env, exitNotFound, "platform_not_found", "validate", "--json", "--platform", "linux/s390x", ref)

	var in struct {
		Platforms    []string `json:"platforms"`
		Available    []struct{ Platform, Digest string }
		Attestations []struct{ Digest, Subject, Platform string }
	}
	runJSON2(t, env, &in, "inspect", "--json", "--insecure-policy", ref)
	if !slices.Equal(in.Platforms, []string{"linux/amd64", "linux/arm64/v8"}) || len(in.Available) != 2 || len(in.Attestations) != 2 ||
		in.Attestations[0].Digest != att0.String() || in.Attestations[0].Subject != amd.String() || in.Attestations[0].Platform != "linux/amd64" {
		t.Errorf("inspect --json: %+v", in)
	}
	r = runBuilt(t, env, "inspect", "--insecure-policy", ref)
	if r.code != 0 || strings.Contains(r.stdout, "unknown/unknown") ||
		!regexp.MustCompile(`(?m)^attestation\s+`+att1.String()+` of linux/arm64/v8$`).MatchString(r.stdout) {
		t.Errorf("inspect: exit %d\n%s", r.code, r.stdout)
	}
	var res resolveOutput
	runJSON2(t, env, &res, "resolve", "--json", "--insecure-policy", ref)
	if !slices.Equal(res.Platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("resolve --json platforms: %v", res.Platforms)
	}
}
