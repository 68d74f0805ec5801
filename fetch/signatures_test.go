package fetch_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

// sigDoc builds a signature document as cosign's classic layout has it: a
// manifest whose layer is a payload, and whose subject is the image.
func sigDoc(t *testing.T, subject ocispec.Descriptor, payload string) (resolve.Blob, []resolve.Blob) {
	t.Helper()
	cfg := []byte(`{"rootfs":{"type":"layers","diff_ids":[]}}`)
	blobs := []resolve.Blob{
		{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}, Data: cfg},
		{Descriptor: ocispec.Descriptor{MediaType: "application/vnd.dev.cosign.simplesigning.v1+json", Digest: digest.FromString(payload), Size: int64(len(payload))}, Data: []byte(payload)},
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: blobs[0].Descriptor, Layers: []ocispec.Descriptor{blobs[1].Descriptor}, Subject: &subject}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return resolve.Blob{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}, blobs
}

// Signatures are stored with the image they sign, listed by its digest,
// kept by GC exactly as long as the image, and never keep it alive
// themselves (their subject points at it).
func TestSignaturesLiveAndDieWithTheirImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	la, lb := randomBytes(40_000, 60), randomBytes(40_000, 61)
	src := newMemSource(la, lb)
	a, b := testImage(t, src, la), testImage(t, src, lb)
	s := openStore(t)
	must(t, first(fetch.Pull(ctx, a, s, fetch.WithRefName("app"))))
	must(t, first(fetch.Pull(ctx, b, s, fetch.WithRefName("other"))))

	subject := a.Manifest.Descriptor.Digest
	sig, sigBlobs := sigDoc(t, a.Manifest.Descriptor, `{"critical":"a"}`)
	must(t, s.PutReferrer(ctx, subject, "", sig, sigBlobs...))
	must(t, s.PutReferrer(ctx, subject, "", sig, sigBlobs...)) // twice: one entry
	other, otherBlobs := sigDoc(t, b.Manifest.Descriptor, `{"critical":"b"}`)
	must(t, s.PutReferrer(ctx, b.Manifest.Descriptor.Digest, "", other, otherBlobs...))

	got, err := s.Referrers(subject)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Digest != sig.Descriptor.Digest || got[0].Annotations[fetch.AnnotationSubject] != subject.String() {
		t.Fatalf("signatures of %s: %+v", subject, got)
	}
	if _, err := s.Referrers("sha256:../../etc"); err == nil {
		t.Fatal("an invalid subject digest was accepted")
	}

	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 0 {
		t.Fatalf("GC removed %v while every image was recorded", res.Blobs)
	}
	for _, bl := range append(sigBlobs, sig) {
		assertBlob(t, s, bl.Data)
	}

	// "app" now names b: a goes, and its signature with it, blobs and
	// index.json entry; b's signature stays.
	must(t, s.Tag(ctx, "app", b.Manifest.Descriptor))
	res, err = s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{a.Manifest.Descriptor.Digest, a.Config.Descriptor.Digest, digest.FromBytes(la), sig.Descriptor.Digest, sigBlobs[1].Descriptor.Digest}
	slices.Sort(want)
	slices.Sort(res.Blobs)
	if !slices.Equal(res.Blobs, want) {
		t.Fatalf("GC removed %v, want %v", res.Blobs, want)
	}
	if got, err := s.Referrers(subject); err != nil || len(got) != 0 {
		t.Fatalf("the signature of the removed image is still listed: %v %v", got, err)
	}
	if got, err := s.Referrers(b.Manifest.Descriptor.Digest); err != nil || len(got) != 1 {
		t.Fatalf("the signature of the kept image: %v %v", got, err)
	}
	for _, bl := range append(otherBlobs, other) {
		assertBlob(t, s, bl.Data)
	}
}

// A signature whose blobs do not match their descriptors is not stored.
func TestPutReferrerVerifiesSignatureBlobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t)
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x"), Size: 1}
	sig, blobs := sigDoc(t, subject, `{"p":1}`)
	blobs[1].Data = []byte(`{"p":2}`)
	if err := s.PutReferrer(ctx, subject.Digest, "", sig, blobs...); err == nil {
		t.Fatal("a payload that does not hash to its digest was stored")
	}
	if got, _ := s.Referrers(subject.Digest); len(got) != 0 {
		t.Fatalf("listed %v", got)
	}
}
