package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch"
)

func bundleCommand() *command {
	return &command{
		name:    "bundle",
		summary: "Make an OCI runtime bundle in DIR: the image unpacked into DIR/rootfs and DIR/config.json from its config.",
		usage:   "bundle " + unpackUsage,
		example: prog + " bundle --platform linux/amd64 docker.io/library/alpine:3.20 ./alpine-bundle && runc run -b ./alpine-bundle demo",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var f unpackFlags
			f.register(fs, "DIR/.rootfs.ocifetch")
			return func(ctx context.Context, e *env, args []string) error {
				res, took, err := f.run(ctx, e, "bundle", args, ocifetch.Bundle)
				if err != nil {
					return err
				}
				if f.json {
					out := map[string]any{
						"reference": res.Resolved.Reference, "manifest": toDesc(res.Resolved.Manifest.Descriptor),
						"bundle": absPath(args[1]), "rootfs": absPath(filepath.Join(args[1], "rootfs")), "config": absPath(filepath.Join(args[1], "config.json")),
						"state": absPath(res.StateDir),
					}
					if t := f.trust.trust(); t != nil {
						out["trust"] = t
					}
					return writeJSON(e, out)
				}
				f.trust.say(e, f.quiet)
				if !f.quiet {
					// The summary names what pull and unpack name: the
					// image's digest, its layers, the bytes and the time.
					what := "config.json written over the unpack already there"
					if res.Apply != nil {
						var files int
						var bytes int64
						for _, l := range res.Apply.Layers {
							files += l.Files
							bytes += l.Bytes
						}
						what = fmt.Sprintf("%d files, %s", files, humanBytes(bytes))
					}
					fmt.Fprintf(e.stderr, "bundled %s (%s): %d layers, %s in %s into %s\n", res.Resolved.Reference, res.Resolved.Manifest.Descriptor.Digest,
						len(res.Resolved.Layers), what, took.Round(time.Millisecond), args[1])
				}
				fmt.Fprintln(e.stdout, res.Resolved.Manifest.Descriptor.Digest)
				return nil
			}
		},
	}
}
