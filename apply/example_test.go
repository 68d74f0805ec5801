package apply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
)

// Apply one uncompressed layer; its report carries the diffID it hashed.
func ExampleApplyLayer() {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
	tw.Write([]byte("demo\n"))
	tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()

	target, _ := os.MkdirTemp("", "rootfs-")
	defer os.RemoveAll(target)
	_, err := apply.ApplyLayer(context.Background(), target, &layer)
	fmt.Println(err != nil) // the escaping entry is refused
	b, _ := os.ReadFile(filepath.Join(target, "etc", "hostname"))
	fmt.Printf("%s", b)
	// Output:
	// true
	// demo
}

// Apply a layer with a state directory, change the tree as a container
// could, and ask Verify; Rebuild gives the layer back only while the tree
// is as applied.
func ExampleVerify() {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "bin/app", Typeflag: tar.TypeReg, Mode: 0o755, Size: 6})
	tw.Write([]byte("binary"))
	tw.Close()
	diffID := digest.FromBytes(layer.Bytes())

	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	state := apply.DefaultStateDir(rootfs)
	l := apply.Layer{MediaType: "application/vnd.oci.image.layer.v1.tar", DiffID: diffID,
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil }}
	if _, err := apply.Apply(context.Background(), rootfs, []apply.Layer{l}, apply.WithStateDir(state)); err != nil {
		fmt.Println(err)
		return
	}
	drift, _ := apply.Verify(context.Background(), state, rootfs)
	fmt.Println(len(drift), apply.Rebuild(context.Background(), state, rootfs, diffID, io.Discard))

	f, _ := os.OpenFile(filepath.Join(rootfs, "bin/app"), os.O_WRONLY, 0)
	f.WriteAt([]byte("BINARY"), 0) // same size
	f.Close()
	drift, _ = apply.Verify(context.Background(), state, rootfs)
	for _, d := range drift {
		fmt.Println(d.Kind, d.Path, d.Changes)
	}
	err := apply.Rebuild(context.Background(), state, rootfs, diffID, io.Discard)
	fmt.Println(errdefs.KindOf(err))
	// Output:
	// 0 <nil>
	// changed bin/app [content mtime]
	// digest_mismatch
}

// Follow an apply as it goes: a callback per layer started, while it runs,
// and when it is done, with the entries and bytes written; the report
// keeps each layer's duration.
func ExampleWithProgress() {
	var layers []apply.Layer
	for _, files := range [][]string{{"etc/", "etc/motd"}, {"etc/motd", "bin/", "bin/app"}} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, name := range files {
			if name[len(name)-1] == '/' {
				tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755})
				continue
			}
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
			tw.Write([]byte("hi\n"))
		}
		tw.Close()
		data := buf.Bytes()
		layers = append(layers, apply.Layer{
			MediaType: "application/vnd.oci.image.layer.v1.tar",
			DiffID:    digest.FromBytes(data),
			Open:      func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		})
	}
	target, _ := os.MkdirTemp("", "rootfs-")
	defer os.RemoveAll(target)
	rep, err := apply.Apply(context.Background(), target, layers,
		apply.WithImage("example.com/app:1", ""),
		apply.WithProgress(func(p apply.Progress) {
			if p.Done {
				fmt.Printf("%s layer %d/%d applied: %d entries, %d bytes\n", p.Reference, p.Layer, p.Layers, p.Entries, p.Bytes)
			}
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(rep.Layers), rep.Layers[0].Duration > 0)
	// Output:
	// example.com/app:1 layer 1/2 applied: 2 entries, 3 bytes
	// example.com/app:1 layer 2/2 applied: 3 entries, 6 bytes
	// 2 true
}
