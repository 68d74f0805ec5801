package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

// storeFlags are the flags of commands that use the store.
type storeFlags struct {
	store string
	jobs  int
	quiet bool
	allow multiFlag
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.store, "store", "", "the blob store, an OCI image layout `DIR` (default: $XDG_CACHE_HOME/ocifetch or ~/.cache/ocifetch)")
	fs.IntVar(&s.jobs, "jobs", fetch.DefaultJobs, "download at most `N` blobs at once")
	fs.BoolVar(&s.quiet, "quiet", false, "print no progress")
	fs.Var(&s.allow, "allow-foreign-host", "fetch foreign layers from URLs on this `HOST` (repeatable; off by default)")
}

func (s *storeFlags) open() (*fetch.Store, error) {
	dir := s.store
	if dir == "" {
		d, err := fetch.DefaultStoreDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	return fetch.OpenStore(dir)
}

func (s *storeFlags) options(p *progress) []fetch.Option {
	opts := []fetch.Option{fetch.WithJobs(s.jobs), fetch.WithProgress(p.event)}
	if len(s.allow) > 0 {
		opts = append(opts, fetch.WithAllowedURLHosts(s.allow...))
	}
	return opts
}

// pullOutput is "resolve --json" plus where the image now is.
type pullOutput struct {
	resolveOutput
	Store      string `json:"store"`
	Name       string `json:"name"`
	Downloaded int64  `json:"downloaded"`
}

func pullCommand() *command {
	return &command{
		name:    "pull",
		summary: "Resolve REF and fetch its config and layers, verified, into the store; print the manifest digest.",
		usage:   "pull [--store DIR] [--platform OS/ARCH[/VARIANT]] [--jobs N] [--json] [--quiet] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-foreign-host HOST]... REF",
		example: prog + " pull --store ./store --platform linux/amd64 docker.io/library/alpine:3.20",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var rf registryFlags
			var sf storeFlags
			rf.register(fs)
			sf.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("pull takes exactly one reference, got %d arguments", len(args))
				}
				if sf.jobs < 1 {
					return usagef("--jobs must be at least 1")
				}
				opts, err := rf.options()
				if err != nil {
					return err
				}
				store, err := sf.open()
				if err != nil {
					return err
				}
				start := time.Now()
				res, err := resolve.Resolve(ctx, args[0], opts...)
				if err != nil {
					return err
				}
				p := newProgress(e.stderr, sf.quiet || rf.json)
				out, err := fetch.Pull(ctx, res, store, sf.options(p)...)
				p.finish()
				if err != nil {
					return err
				}
				if rf.json {
					return writeJSON(e, pullOutput{resolveOutput: resolvedJSON(res), Store: store.Dir(), Name: out.Name, Downloaded: out.Downloaded})
				}
				if !sf.quiet {
					var total int64
					for _, l := range out.Layers {
						total += l.Size
					}
					fmt.Fprintf(e.stderr, "pulled %s: %d layers, %s, %s downloaded in %s into %s\n", res.Reference, len(out.Layers),
						humanBytes(total), humanBytes(out.Downloaded), time.Since(start).Round(time.Millisecond), store.Dir())
				}
				fmt.Fprintln(e.stdout, res.Manifest.Descriptor.Digest)
				return nil
			}
		},
	}
}

func gcCommand() *command {
	return &command{
		name:    "gc",
		summary: "Remove blobs and partial downloads that no image recorded in the store's index.json reaches.",
		usage:   "gc [--store DIR] [--json]",
		example: prog + " gc --store ./store",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var sf storeFlags
			var asJSON bool
			fs.StringVar(&sf.store, "store", "", "the blob store `DIR` (default: $XDG_CACHE_HOME/ocifetch or ~/.cache/ocifetch)")
			fs.BoolVar(&asJSON, "json", false, "print one JSON object")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usagef("gc takes no arguments")
				}
				store, err := sf.open()
				if err != nil {
					return err
				}
				res, err := store.GC(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(e, map[string]any{"store": store.Dir(), "removed": res.Blobs, "partials": res.Partials, "bytes": res.Bytes})
				}
				for _, d := range res.Blobs {
					fmt.Fprintln(e.stdout, d)
				}
				fmt.Fprintf(e.stderr, "removed %d blobs and %d partial downloads, %s\n", len(res.Blobs), len(res.Partials), humanBytes(res.Bytes))
				return nil
			}
		},
	}
}
