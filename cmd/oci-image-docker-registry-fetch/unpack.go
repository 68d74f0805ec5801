package main

import (
	"context"
	"fmt"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/apply"
)

// unpackOutput is "pull --json" plus the target and what was applied.
type unpackOutput struct {
	pullOutput
	Target   string          `json:"target"`
	State    string          `json:"state"`
	Applied  []layerApplied  `json:"applied"`
	Warnings []apply.Warning `json:"warnings"`
}

type layerApplied struct {
	DiffID  string `json:"diffID"`
	Entries int    `json:"entries"`
	Files   int    `json:"files"`
	Bytes   int64  `json:"bytes"`
}

func unpackCommand() *command {
	return &command{
		name:    "unpack",
		summary: "Resolve REF, fetch it into the store and apply its layers to DIR, which becomes the image's root filesystem.",
		usage:   "unpack [--platform OS/ARCH[/VARIANT]] [--store DIR] [--pull always|missing|never] [--jobs N] [--json] [--quiet] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... [--allow-foreign-host HOST]... [--policy FILE | --insecure-policy] REF DIR",
		example: prog + " unpack --platform linux/amd64 docker.io/library/alpine:3.20 ./rootfs",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var pf pipelineFlags
			pf.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 2 {
					return usagef("unpack takes a reference and a directory, got %d arguments", len(args))
				}
				opts, p, err := pf.options(e)
				if err != nil {
					return err
				}
				start := time.Now()
				res, err := ocifetch.Unpack(ctx, args[0], args[1], opts...)
				p.finish()
				if err != nil {
					return err
				}
				if pf.json {
					out := unpackOutput{
						pullOutput: pullOutput{resolveOutput: resolvedJSON(res.Resolved), Store: res.Store.Dir(), Name: res.Pull.Name, Downloaded: res.Pull.Downloaded},
						Target:     args[1], State: res.StateDir, Applied: []layerApplied{}, Warnings: []apply.Warning{},
					}
					out.Trust = pf.trust.trust()
					for _, l := range res.Apply.Layers {
						out.Applied = append(out.Applied, layerApplied{DiffID: l.DiffID.String(), Entries: l.Entries, Files: l.Files, Bytes: l.Bytes})
						out.Warnings = append(out.Warnings, l.Warnings...)
					}
					return writeJSON(e, out)
				}
				pf.trust.say(e, pf.quiet)
				var files int
				var bytes int64
				for _, l := range res.Apply.Layers {
					files += l.Files
					bytes += l.Bytes
					for _, w := range l.Warnings {
						fmt.Fprintf(e.stderr, "warning: %s: %s\n", w.Path, w.Message)
					}
				}
				if !pf.quiet {
					fmt.Fprintf(e.stderr, "unpacked %s (%s): %d layers, %d files, %s in %s into %s\n",
						res.Resolved.Reference, res.Resolved.Manifest.Descriptor.Digest, len(res.Apply.Layers), files,
						humanBytes(bytes), time.Since(start).Round(time.Millisecond), args[1])
				}
				fmt.Fprintln(e.stdout, res.Resolved.Manifest.Descriptor.Digest)
				return nil
			}
		},
	}
}
