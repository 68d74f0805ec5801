package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/demoimage"
	"github.com/ocifetch/ocifetch/resolve"
)

func demoCommand() *command {
	return &command{
		name:    "demo",
		summary: "Run the whole job offline: serve a built-in multi-platform image from a registry on loopback, resolve, pull, unpack, then rebuild every layer and check it.",
		usage:   "demo [--platform OS/ARCH[/VARIANT]] [--keep DIR] [-v]",
		example: prog + " demo --keep ./demo",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var platform, keep string
			fs.StringVar(&platform, "platform", "", "platform to pick, `OS/ARCH[/VARIANT]` (default: this machine's, or linux/amd64)")
			fs.StringVar(&keep, "keep", "", "keep the store and rootfs in this `DIR` (default: a temporary directory, removed at the end)")
			debugOn := registerDebug(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usagef("demo takes no arguments")
				}
				return runDemo(ctx, e, platform, keep, debugOn(e))
			}
		},
	}
}

func runDemo(ctx context.Context, e *env, platform, keep string, dbg *debugLog) error {
	say := func(format string, args ...any) { fmt.Fprintf(e.stdout, format+"\n", args...) }
	p := resolve.HostPlatform()
	if platform != "" {
		var err error
		if p, err = resolve.ParsePlatform(platform); err != nil {
			return err
		}
	} else if !demoHas(p) {
		p, _ = resolve.ParsePlatform("linux/amd64")
	}

	work := keep
	if work == "" {
		d, err := os.MkdirTemp("", "ocifetch-demo-")
		if err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "temporary directory")
		}
		defer os.RemoveAll(d)
		work = d
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "--keep %s", keep)
	}

	// 1. A registry on loopback, serving the built-in image.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrNetwork, "listening on loopback")
	}
	srv := &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	ref := ln.Addr().String() + "/ocifetch/demo:latest"
	idx, err := demoimage.Index()
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "building the demo image")
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "demo reference")
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx)); err != nil {
		return errdefs.Wrap(err, errdefs.ErrNetwork, "pushing the demo image")
	}
	say("1. serving a %d-platform demo image at %s (an in-process registry on loopback)", len(demoimage.Platforms), ref)

	// 2. Resolve, then 3. pull and unpack: layers are verified as they
	// stream into the store and into the root filesystem.
	ropts := []resolve.Option{resolve.WithPlatform(p), resolve.WithSourceOptions(dbg.sourceOptions()...)}
	store, rootfs := filepath.Join(work, "store"), filepath.Join(work, "rootfs")
	var res *resolve.Resolved
	start := time.Now()
	ures, err := ocifetch.Unpack(ctx, ref, rootfs, ocifetch.WithStore(store), ocifetch.WithResolveOptions(ropts...),
		ocifetch.WithFetchOptions(fetch.WithProgress(dbg.blob)),
		ocifetch.WithApplyOptions(apply.WithProgress(dbg.applied)),
		ocifetch.WithResolved(func(r *resolve.Resolved) {
			dbg.resolved(r.Reference, r.Manifest.Descriptor.Digest.String())
			res = r
			say("2. resolved for %s:", resolve.FormatPlatform(p))
			for _, b := range r.Indexes {
				say("     index    %s (%d platforms: %s)", b.Descriptor.Digest, len(r.Platforms), platformNames(r))
			}
			say("     manifest %s (%s)", r.Manifest.Descriptor.Digest, resolve.FormatPlatform(resolve.Normalize(r.Platform)))
			say("     config   %s", r.Config.Descriptor.Digest)
			for i, l := range r.Layers {
				say("     layer %d  %s  %s, diffID %s", i+1, l.Digest, humanBytes(l.Size), l.DiffID)
			}
		}))
	if err != nil {
		return err
	}
	files, bytes := 0, int64(0)
	for _, l := range ures.Apply.Layers {
		files += l.Files
		bytes += l.Bytes
	}
	say("3. pulled into the store %s and unpacked into %s in %s:", store, rootfs, time.Since(start).Round(time.Millisecond))
	for i, l := range ures.Apply.Layers {
		say("     layer %d  %d entries, %d files, %d whiteouts, diffID verified %s", i+1, l.Entries, l.Files, l.Whiteouts, l.DiffID)
	}
	motd, err := os.ReadFile(filepath.Join(rootfs, "etc", "motd"))
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "reading the unpacked image")
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "var", "cache", "junk")); !errors.Is(err, os.ErrNotExist) {
		return errdefs.New(errdefs.ErrInternal, "the whiteout of var/cache/junk was not applied")
	}
	say("     /etc/motd says %q; /var/cache/junk was whited out by layer 2", string(motd[:len(motd)-1]))

	// 4. Rebuild every layer from the tree and the tar-split metadata
	// alone, after deleting the store, and check each against its diffID.
	// With --keep the store is only moved out of reach and put back after.
	hidden := store + ".hidden"
	if err := os.Rename(store, hidden); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "moving the store away")
	}
	checks, err := apply.Check(ctx, apply.DefaultStateDir(rootfs), rootfs)
	if rerr := os.Rename(hidden, store); rerr != nil && err == nil {
		err = errdefs.Wrap(rerr, errdefs.ErrInternal, "putting the store back")
	}
	if err != nil {
		return err
	}
	say("4. with the store out of reach, rebuilt each layer's tar from the rootfs and its tar-split metadata:")
	for _, c := range checks {
		if c.Err != nil {
			return c.Err
		}
		say("     layer %d  %d bytes, sha256 equals the diffID %s", c.Index+1, c.Bytes, c.DiffID)
	}

	say("done: %s, %d layers, %d files, %s, all verified and reproducible", res.Manifest.Descriptor.Digest, len(res.Layers), files, humanBytes(bytes))
	if keep == "" {
		say("(temporary files removed; run with --keep DIR to look at them)")
	}
	return nil
}

// demoHas reports whether the demo image has a build for p.
func demoHas(p ocispec.Platform) bool {
	for _, d := range demoimage.Platforms {
		if resolve.Matches(p, ocispec.Platform{OS: d.OS, Architecture: d.Architecture, Variant: d.Variant}) {
			return true
		}
	}
	return false
}

func platformNames(r *resolve.Resolved) string {
	s := ""
	for i, p := range r.Platforms {
		if i > 0 {
			s += ", "
		}
		s += resolve.FormatPlatform(p)
	}
	return s
}
