package main

import (
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"context"
	"fmt"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch/errdefs"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/fetch"
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

func (s *storeFlags) options(p *progress) []fetch.Option {
	opts := []fetch.Option{fetch.WithJobs(s.jobs), fetch.WithProgress(p.event)}
	if len(s.allow) > 0 {
		opts = append(opts, fetch.WithAllowedURLHosts(s.allow...))
	}
	return opts
}

// pipelineFlags are the flags of the commands that run the pipeline (pull,
// unpack, bundle): where to resolve from and how to fetch.
type pipelineFlags struct {
	registryFlags
	storeFlags
}

func (f *pipelineFlags) register(fs *flag.FlagSet) {
	f.registryFlags.register(fs)
	f.storeFlags.register(fs)
}

// options turns the flags into library options and starts the progress
// display, which the caller finishes.
func (f *pipelineFlags) options(e *env) ([]ocifetch.Option, *progress, error) {
	ropts, err := f.registryFlags.options(e)
	if err != nil {
		return nil, nil, err
	}
	if f.jobs < 1 {
		return nil, nil, usagef("--jobs must be at least 1")
	}
	p := newProgress(e.stderr, f.quiet || f.json)
	opts := []ocifetch.Option{ocifetch.WithResolveOptions(ropts...), ocifetch.WithFetchOptions(f.storeFlags.options(p)...)}
	if f.store != "" {
		opts = append(opts, ocifetch.WithStore(f.store))
	}
	return opts, p, nil
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
		usage:   "pull [--store DIR] [--platform OS/ARCH[/VARIANT]] [--jobs N] [--json] [--quiet] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... [--allow-foreign-host HOST]... REF",
		example: prog + " pull --store ./store --platform linux/amd64 docker.io/library/alpine:3.20",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var pf pipelineFlags
			pf.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("pull takes exactly one reference, got %d arguments", len(args))
				}
				opts, p, err := pf.options(e)
				if err != nil {
					return err
				}
				start := time.Now()
				res, err := ocifetch.Pull(ctx, args[0], opts...)
				p.finish()
				if err != nil {
					return err
				}
				if pf.json {
					return writeJSON(e, pullOutput{resolveOutput: resolvedJSON(res.Resolved), Store: res.Store.Dir(), Name: res.Pull.Name, Downloaded: res.Pull.Downloaded})
				}
				if !pf.quiet {
					var total int64
					for _, l := range res.Pull.Layers {
						total += l.Size
					}
					fmt.Fprintf(e.stderr, "pulled %s: %d layers, %s, %s downloaded in %s into %s\n", res.Resolved.Reference, len(res.Pull.Layers),
						humanBytes(total), humanBytes(res.Pull.Downloaded), time.Since(start).Round(time.Millisecond), res.Store.Dir())
				}
				fmt.Fprintln(e.stdout, res.Resolved.Manifest.Descriptor.Digest)
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
				// gc never creates a store: a mistyped --store must not
				// leave an empty one somewhere and report success.
				dir := sf.store
				if dir == "" {
					d, err := fetch.DefaultStoreDir()
					if err != nil {
						return err
					}
					dir = d
				}
				if _, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile)); err != nil {
					return errdefs.New(errdefs.ErrNotFound, "%s is not a store (no %s)", dir, ocispec.ImageLayoutFile)
				}
				store, err := fetch.OpenStore(dir)
				if err != nil {
					return err
				}
				res, err := store.GC(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					removed, partials := res.Blobs, res.Partials
					if removed == nil {
						removed = []digest.Digest{}
					}
					if partials == nil {
						partials = []digest.Digest{}
					}
					return writeJSON(e, map[string]any{"store": store.Dir(), "removed": removed, "partials": partials, "bytes": res.Bytes})
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
