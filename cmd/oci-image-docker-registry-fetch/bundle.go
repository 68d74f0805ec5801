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
					fmt.Fprintf(e.stderr, "bundle %s ready in %s (%s)\n", args[1], took.Round(time.Millisecond), res.Resolved.Reference)
				}
				fmt.Fprintln(e.stdout, res.Resolved.Manifest.Descriptor.Digest)
				return nil
			}
		},
	}
}
