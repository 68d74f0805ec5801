package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pushCmd pushes the one image of an OCI layout to a registry over plain
// HTTP with monolithic blob uploads, byte for byte (no recompression).
func pushCmd(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	layout := fs.String("layout", "", "OCI image layout holding one image")
	ref := fs.String("ref", "", "HOST:PORT/REPO:TAG")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, rest, ok := strings.Cut(*ref, "/")
	i := strings.LastIndex(rest, ":")
	if !ok || i <= 0 {
		return fmt.Errorf("-ref %q: want HOST:PORT/REPO:TAG", *ref)
	}
	repo, tag := rest[:i], rest[i+1:]
	base := "http://" + host + "/v2/" + repo

	var idx ocispec.Index
	if err := readJSON(filepath.Join(*layout, "index.json"), &idx); err != nil {
		return err
	}
	if len(idx.Manifests) != 1 {
		return fmt.Errorf("%s: want one manifest, found %d", *layout, len(idx.Manifests))
	}
	mdesc := idx.Manifests[0]
	blob := func(d ocispec.Descriptor) string {
		return filepath.Join(*layout, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded())
	}
	mJSON, err := os.ReadFile(blob(mdesc))
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mJSON, &m); err != nil {
		return err
	}
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := pushBlob(base, d, blob(d)); err != nil {
			return err
		}
	}
	req, err := http.NewRequest(http.MethodPut, base+"/manifests/"+tag, strings.NewReader(string(mJSON)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mdesc.MediaType)
	return expect(http.DefaultClient.Do(req))(http.StatusCreated)
}

func pushBlob(base string, d ocispec.Descriptor, file string) error {
	head, err := http.Head(base + "/blobs/" + d.Digest.String())
	if err != nil {
		return err
	}
	head.Body.Close()
	if head.StatusCode == http.StatusOK {
		return nil
	}
	resp, err := http.Post(base+"/blobs/uploads/", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s/blobs/uploads/: %s", base, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	b, _ := url.Parse(base)
	u := b.ResolveReference(loc)
	q := u.Query()
	q.Set("digest", d.Digest.String())
	u.RawQuery = q.Encode()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequest(http.MethodPut, u.String(), f)
	if err != nil {
		return err
	}
	req.ContentLength = d.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	if err := expect(http.DefaultClient.Do(req))(http.StatusCreated); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return nil
}

func expect(resp *http.Response, err error) func(int) error {
	return func(code int) error {
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != code {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL, resp.Status, body)
		}
		return nil
	}
}

func readJSON(file string, v any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}
