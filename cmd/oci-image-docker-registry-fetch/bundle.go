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
		usage:   "bundle [--platform OS/ARCH[/VARIANT]] [--store DIR] [--state DIR] [--keep-blobs=false] [--pull always|missing|never] [--jobs N] [--max-layer-bytes SIZE] [--max-total-bytes SIZE] [--max-layer-entries N] [--json] [--quiet] [-v] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... [--allow-foreign-host HOST]... [--policy FILE | --insecure-policy] REF DIR",
		example: prog + " bundle --platform linux/amd64 docker.io/library/alpine:3.20 ./alpine-bundle && runc run -b ./alpine-bundle demo",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var pf pipelineFlags
			var af applyFlags
			pf.register(fs)
			af.register(fs, "DIR/.rootfs.ocifetch")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 2 {
					return usagef("bundle takes a reference and a directory, got %d arguments", len(args))
				}
				opts, p, err := pf.options(e)
				if err != nil {
					return err
				}
				aopts, err := af.options()
				if err != nil {
					p.finish()
					return err
				}
				start := time.Now()
				res, err := ocifetch.Bundle(ctx, args[0], args[1], append(opts, aopts...)...)
				p.finish()
				if err != nil {
					return err
				}
				if pf.json {
					out := map[string]any{
						"reference": res.Resolved.Reference, "manifest": toDesc(res.Resolved.Manifest.Descriptor),
						"bundle": absPath(args[1]), "rootfs": absPath(filepath.Join(args[1], "rootfs")), "config": absPath(filepath.Join(args[1], "config.json")),
						"state": absPath(res.StateDir),
					}
					if t := pf.trust.trust(); t != nil {
						out["trust"] = t
					}
					return writeJSON(e, out)
				}
				pf.trust.say(e, pf.quiet)
				if !pf.quiet {
					fmt.Fprintf(e.stderr, "bundle %s ready in %s (%s)\n", args[1], time.Since(start).Round(time.Millisecond), res.Resolved.Reference)
				}
				fmt.Fprintln(e.stdout, res.Resolved.Manifest.Descriptor.Digest)
				return nil
			}
		},
	}
}
