// Command rebuild-layer shows what reproducibility tooling does with
// ocifetch: given a root filesystem that ocifetch unpacked, rebuild each
// layer's exact tar from the tree and its tar-split metadata (no registry,
// no store needed), check it against the image's diffID, and report any
// file that changed since the unpack.
//
//	go run ./examples/rebuild-layer ROOTFS [OUTDIR]
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: rebuild-layer ROOTFS [OUTDIR]")
		os.Exit(2)
	}
	ctx := context.Background()
	rootfs := os.Args[1]
	state := apply.DefaultStateDir(rootfs)

	st, err := apply.Status(state)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", errdefs.KindOf(err), err)
		os.Exit(1)
	}
	fmt.Printf("%s (%s): %d layers\n", st.Reference, st.Manifest, len(st.Layers))

	failed := false
	for i, l := range st.Layers {
		// Hash the rebuilt stream ourselves too: the tool trusts nothing.
		h := sha256.New()
		var w io.Writer = h
		if len(os.Args) == 3 {
			f, err := os.Create(filepath.Join(os.Args[2], fmt.Sprintf("layer-%d.tar", i+1)))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer f.Close()
			w = io.MultiWriter(h, f)
		}
		err := apply.Rebuild(ctx, state, rootfs, l.DiffID, w)
		sum := "sha256:" + hex.EncodeToString(h.Sum(nil))
		switch {
		case err != nil:
			failed = true
			fmt.Printf("layer %d: NOT reproducible (%s): %v\n", i+1, errdefs.KindOf(err), err)
		case sum != l.DiffID.String():
			failed = true
			fmt.Printf("layer %d: rebuilt to %s, want %s\n", i+1, sum, l.DiffID)
		default:
			fmt.Printf("layer %d: reproducible, %s\n", i+1, sum)
		}
	}

	drift, err := apply.Verify(ctx, state, rootfs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, d := range drift {
		fmt.Printf("drift: %s %s %v\n", d.Kind, d.Path, d.Changes)
	}
	if failed || len(drift) > 0 {
		os.Exit(1)
	}
}
