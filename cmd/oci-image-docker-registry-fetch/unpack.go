package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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
	// KeepBlobs is false when the layer blobs were not kept in the store
	// (--keep-blobs=false).
	KeepBlobs bool `json:"keepBlobs"`
}

type layerApplied struct {
	DiffID  string `json:"diffID"`
	Entries int    `json:"entries"`
	Files   int    `json:"files"`
	Bytes   int64  `json:"bytes"`
	// Reproducible says whether the tree makes the layer's blob again:
	// "tar", "confirmed", "candidate" or "" (see rebuild --compressed).
	Reproducible string `json:"reproducible"`
	// DurationMs is how long the layer took, in milliseconds (including
	// waiting for its bytes while it downloaded).
	DurationMs int64 `json:"durationMs"`
}

// The limits the CLI applies by default (apply's own default is none):
// far above real images (the largest CUDA and model layers are a few tens
// of GiB uncompressed), far below what fills a disk by surprise, and
// they stop a decompression bomb or a layer of millions of tiny entries.
const (
	defaultMaxLayerBytes   = 64 << 30
	defaultMaxTotalBytes   = 256 << 30
	defaultMaxLayerEntries = 4_000_000
)

// applyFlags are the flags of the commands that apply layers (unpack,
// bundle): where the state goes and the limits.
type applyFlags struct {
	state      string
	maxLayer   byteSize
	maxTotal   byteSize
	maxEntries int64
	keepBlobs  bool
}

func (a *applyFlags) register(fs *flag.FlagSet, stateDefault string) {
	a.maxLayer, a.maxTotal = defaultMaxLayerBytes, defaultMaxTotalBytes
	fs.StringVar(&a.state, "state", "", "keep the state (tar-split metadata, digests, lock) in `DIR` (default: "+stateDefault+"); outside the tree, on its file system")
	fs.Var(&a.maxLayer, "max-layer-bytes", "fail with too_large when one layer uncompresses to more than `SIZE` (bytes, or with K, M, G, T: powers of 1024; 0: no limit)")
	fs.Var(&a.maxTotal, "max-total-bytes", "fail with too_large when all layers together uncompress to more than `SIZE` (0: no limit)")
	fs.Int64Var(&a.maxEntries, "max-layer-entries", defaultMaxLayerEntries, "fail with too_large when one layer has more than `N` entries (0: no limit)")
	fs.BoolVar(&a.keepBlobs, "keep-blobs", true, "keep the layer blobs in the store; --keep-blobs=false streams layers from the registry straight into the tree and keeps none (the tree makes them again: rebuild --compressed)")
}

func (a *applyFlags) options() ([]ocifetch.Option, error) {
	if a.maxEntries < 0 {
		return nil, usagef("--max-layer-entries must not be negative")
	}
	opts := []ocifetch.Option{ocifetch.WithApplyOptions(
		apply.WithMaxLayerBytes(int64(a.maxLayer)),
		apply.WithMaxTotalBytes(int64(a.maxTotal)),
		apply.WithMaxEntries(a.maxEntries),
	)}
	if a.state != "" {
		opts = append(opts, ocifetch.WithStateDir(a.state))
	}
	if !a.keepBlobs {
		opts = append(opts, ocifetch.WithKeepBlobs(false))
	}
	return opts, nil
}

// byteSize is a flag of a size in bytes, with an optional binary suffix.
type byteSize int64

func (b *byteSize) String() string { return formatSize(int64(*b)) }
func (b *byteSize) Type() string   { return "size" }

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// parseSize reads "4096", "512K", "64GiB", "1T" (powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if i := strings.IndexAny(t, "KMGT"); i >= 0 && i == len(t)-1 {
		mult = int64(1) << (10 * (1 + strings.IndexByte("KMGT", t[i])))
		t = t[:i]
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<63-1)/mult {
		return 0, fmt.Errorf("%q is not a size: give bytes, or a number with K, M, G or T", s)
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// unpackUsage is the flags of unpack and bundle, for their usage lines.
const unpackUsage = "[--platform OS/ARCH[/VARIANT]] [--store DIR] [--state DIR] [--keep-blobs=false] [--pull always|missing|never] [--jobs N] [--max-layer-bytes SIZE] [--max-total-bytes SIZE] [--max-layer-entries N] [--json] [--quiet] [-v] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... [--allow-foreign-host HOST]... [--policy FILE | --insecure-policy] REF DIR"

// unpackFlags are the flags of the commands that unpack an image into a
// directory (unpack, bundle).
type unpackFlags struct {
	pipelineFlags
	applyFlags
}

func (f *unpackFlags) register(fs *flag.FlagSet, stateDefault string) {
	f.pipelineFlags.register(fs)
	f.applyFlags.register(fs, stateDefault)
}

// run checks the arguments (a reference and a directory), calls unpack
// (ocifetch.Unpack or ocifetch.Bundle) with the flags' options, and
// finishes the progress display before the caller prints anything.
func (f *unpackFlags) run(ctx context.Context, e *env, verb string, args []string,
	unpack func(context.Context, string, string, ...ocifetch.Option) (*ocifetch.Result, error)) (*ocifetch.Result, time.Duration, error) {
	if len(args) != 2 {
		return nil, 0, usagef("%s takes a reference and a directory, got %d arguments", verb, len(args))
	}
	opts, p, err := f.pipelineFlags.options(e)
	if err != nil {
		return nil, 0, err
	}
	defer p.finish()
	aopts, err := f.applyFlags.options()
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	res, err := unpack(ctx, args[0], args[1], append(opts, aopts...)...)
	return res, time.Since(start), err
}

func unpackCommand() *command {
	return &command{
		name:    "unpack",
		summary: "Resolve REF, fetch it into the store and apply its layers to DIR, which becomes the image's root filesystem.",
		usage:   "unpack " + unpackUsage,
		example: prog + " unpack --platform linux/amd64 docker.io/library/alpine:3.20 ./rootfs",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var f unpackFlags
			f.register(fs, ".DIR.ocifetch beside DIR")
			return func(ctx context.Context, e *env, args []string) error {
				res, took, err := f.run(ctx, e, "unpack", args, ocifetch.Unpack)
				if err != nil {
					return err
				}
				if f.json {
					out := unpackOutput{
						pullOutput: pullOutput{resolveOutput: resolvedJSON(res.Resolved), Store: res.Store.Dir(), Name: res.Pull.Name, Downloaded: res.Pull.Downloaded},
						Target:     absPath(args[1]), State: absPath(res.StateDir), Applied: []layerApplied{}, Warnings: []apply.Warning{}, KeepBlobs: f.keepBlobs,
					}
					out.Trust = f.trust.trust()
					st, _ := apply.Status(res.StateDir)
					for i, l := range res.Apply.Layers {
						a := layerApplied{DiffID: l.DiffID.String(), Entries: l.Entries, Files: l.Files, Bytes: l.Bytes, DurationMs: l.Duration.Milliseconds()}
						if st != nil && i < len(st.Layers) {
							a.Reproducible = st.Layers[i].Reproducible()
						}
						out.Applied = append(out.Applied, a)
						out.Warnings = append(out.Warnings, l.Warnings...)
					}
					return writeJSON(e, out)
				}
				f.trust.say(e, f.quiet)
				var files int
				var bytes int64
				for _, l := range res.Apply.Layers {
					files += l.Files
					bytes += l.Bytes
					for _, w := range l.Warnings {
						fmt.Fprintf(e.stderr, "warning: %s: %s\n", textQuote(w.Path), textQuote(w.Message))
					}
				}
				if !f.quiet {
					fmt.Fprintf(e.stderr, "unpacked %s (%s): %d layers, %d files, %s in %s into %s\n",
						res.Resolved.Reference, res.Resolved.Manifest.Descriptor.Digest, len(res.Apply.Layers), files,
						humanBytes(bytes), took.Round(time.Millisecond), args[1])
				}
				fmt.Fprintln(e.stdout, res.Resolved.Manifest.Descriptor.Digest)
				return nil
			}
		},
	}
}
