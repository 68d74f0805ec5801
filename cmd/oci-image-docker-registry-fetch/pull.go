package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
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
	fs.BoolVarP(&s.quiet, "quiet", "q", false, "print no progress")
	fs.Var(&s.allow, "allow-foreign-host", "fetch foreign layers from URLs on this `HOST` (repeatable; off by default)")
}

func (s *storeFlags) options(p *progress, dbg *debugLog) []fetch.Option {
	opts := []fetch.Option{fetch.WithJobs(s.jobs), fetch.WithProgress(func(ev fetch.Event) {
		p.event(ev)
		dbg.blob(ev)
	})}
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
	pull string
	// allowAll: "--platform all" is allowed (pull); all: it was given.
	allowAll, all bool
	trust         policyFlags
}

func (f *pipelineFlags) register(fs *flag.FlagSet) {
	f.registryFlags.register(fs)
	f.storeFlags.register(fs)
	fs.StringVar(&f.pull, "pull", string(ocifetch.PullAlways), "when to ask the registry: `always|missing|never` (every time; only when the store lacks the image; never, the store only)")
	f.trust.register(fs)
}

// options turns the flags into library options and starts the progress
// display, which the caller finishes.
func (f *pipelineFlags) options(e *env) ([]ocifetch.Option, *progress, error) {
	if f.platform == "all" {
		if !f.allowAll {
			return nil, nil, usagef("--platform all only applies to pull; name one platform, OS/ARCH[/VARIANT]")
		}
		f.all, f.platform = true, ""
	}
	policy, err := ocifetch.ParsePullPolicy(f.pull)
	if err != nil {
		return nil, nil, usagef("--pull %s: want always, missing or never", f.pull)
	}
	ropts, err := f.registryFlags.options(e)
	if err != nil {
		return nil, nil, err
	}
	if f.jobs < 1 {
		return nil, nil, usagef("--jobs must be at least 1")
	}
	p := newProgress(e.stderr, f.quiet || f.json)
	dbg := f.dbg
	opts := []ocifetch.Option{
		ocifetch.WithResolveOptions(ropts...),
		ocifetch.WithFetchOptions(f.storeFlags.options(p, dbg)...),
		ocifetch.WithApplyOptions(apply.WithProgress(func(ap apply.Progress) {
			p.layer(ap)
			dbg.applied(ap)
		})),
		ocifetch.WithPullPolicy(policy),
		ocifetch.WithResolved(func(res *resolve.Resolved) { dbg.resolved(res.Reference, res.Manifest.Descriptor.Digest.String()) }),
	}
	if f.store != "" {
		opts = append(opts, ocifetch.WithStore(f.store))
	}
	vopt, err := f.verifier(e)
	if err != nil {
		return nil, nil, err
	}
	return append(opts, vopt...), p, nil
}

// verifier loads the trust policy, which keeps the signatures it finds in
// the store the image goes to.
func (f *pipelineFlags) verifier(e *env) ([]ocifetch.Option, error) {
	if f.trust.insecure {
		_, err := f.trust.load(e, nil)
		return nil, err
	}
	dir := f.store
	if dir == "" {
		d, err := fetch.DefaultStoreDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	store, err := fetch.OpenStore(dir)
	if err != nil {
		return nil, err
	}
	pol, err := f.trust.load(e, store)
	if err != nil || pol == nil {
		return nil, err
	}
	return []ocifetch.Option{ocifetch.WithVerifier(pol)}, nil
}

// pullOutput is "resolve --json" plus where the image now is.
type pullOutput struct {
	resolveOutput
	Store      string `json:"store"`
	Name       string `json:"name"`
	Downloaded int64  `json:"downloaded"`
}

// pullAllOutput is "pull --platform all --json".
type pullAllOutput struct {
	Reference  string      `json:"reference"`
	Store      string      `json:"store"`
	Name       string      `json:"name"`
	Index      descJSON    `json:"index"`
	Platforms  []string    `json:"platforms"`
	Images     []imageJSON `json:"images"`
	Artifacts  []descJSON  `json:"artifacts"`
	Downloaded int64       `json:"downloaded"`
}

// imageJSON is one platform's image in "pull --platform all --json".
type imageJSON struct {
	Platform string      `json:"platform"`
	Manifest descJSON    `json:"manifest"`
	Config   descJSON    `json:"config"`
	Layers   []layerJSON `json:"layers"`
}

func pullAllJSON(res *ocifetch.AllResult) pullAllOutput {
	ra := res.Resolved
	out := pullAllOutput{Reference: ra.Reference, Store: res.Store.Dir(), Name: res.Pull.Name, Index: toDesc(res.Pull.Entry),
		Platforms: []string{}, Images: []imageJSON{}, Artifacts: []descJSON{}, Downloaded: res.Pull.Downloaded}
	for _, im := range ra.Images {
		p := resolve.FormatPlatform(resolve.Normalize(im.Platform))
		out.Platforms = append(out.Platforms, p)
		ij := imageJSON{Platform: p, Manifest: toDesc(im.Manifest.Descriptor), Config: toDesc(im.Config.Descriptor), Layers: []layerJSON{}}
		for _, l := range im.Layers {
			ij.Layers = append(ij.Layers, layerJSON{descJSON: toDesc(l.Descriptor), DiffID: l.DiffID.String()})
		}
		out.Images = append(out.Images, ij)
	}
	for _, a := range ra.Artifacts {
		out.Artifacts = append(out.Artifacts, toDesc(a.Manifest.Descriptor))
	}
	return out
}

func pullCommand() *command {
	return &command{
		name:    "pull",
		summary: "Resolve REF and fetch its config and layers, verified, into the store; print the manifest digest.",
		usage:   "pull [--store DIR] [--platform OS/ARCH[/VARIANT]|all] [--pull always|missing|never] [--jobs N] [--json] [--quiet] [-v] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... [--allow-foreign-host HOST]... [--policy FILE | --insecure-policy] REF",
		example: prog + " pull --store ./store --platform linux/amd64 docker.io/library/alpine:3.20",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			pf := pipelineFlags{allowAll: true}
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
				if pf.all {
					res, err := ocifetch.PullAll(ctx, args[0], opts...)
					p.finish()
					if err != nil {
						return err
					}
					if pf.json {
						return writeJSON(e, pullAllJSON(res))
					}
					if !pf.quiet {
						out := pullAllJSON(res)
						fmt.Fprintf(e.stderr, "pulled %s (%s): %d platforms (%s), %s downloaded in %s into %s\n", res.Resolved.Reference, res.Pull.Entry.Digest, len(out.Platforms),
							joinOr(quoteEach(out.Platforms), "none"), humanBytes(res.Pull.Downloaded), time.Since(start).Round(time.Millisecond), res.Store.Dir())
					}
					fmt.Fprintln(e.stdout, res.Pull.Entry.Digest)
					return nil
				}
				res, err := ocifetch.Pull(ctx, args[0], opts...)
				p.finish()
				if err != nil {
					return err
				}
				if pf.json {
					out := pullOutput{resolveOutput: resolvedJSON(res.Resolved), Store: res.Store.Dir(), Name: res.Pull.Name, Downloaded: res.Pull.Downloaded}
					out.Trust = pf.trust.trust()
					return writeJSON(e, out)
				}
				pf.trust.say(e, pf.quiet)
				if !pf.quiet {
					var total int64
					for _, l := range res.Pull.Layers {
						total += l.Size
					}
					fmt.Fprintf(e.stderr, "pulled %s (%s): %d layers, %s, %s downloaded in %s into %s\n", res.Resolved.Reference, res.Resolved.Manifest.Descriptor.Digest, len(res.Pull.Layers),
						humanBytes(total), humanBytes(res.Pull.Downloaded), time.Since(start).Round(time.Millisecond), res.Store.Dir())
				}
				fmt.Fprintln(e.stdout, res.Resolved.Manifest.Descriptor.Digest)
				return nil
			}
		},
	}
}

// gcOutput is "gc --json".
type gcJSON struct {
	Store    string          `json:"store"`
	Removed  []digest.Digest `json:"removed"`
	Corrupt  []digest.Digest `json:"corrupt"`
	Partials []digest.Digest `json:"partials"`
	Pruned   []entryJSON     `json:"pruned"`
	Bytes    int64           `json:"bytes"`
	// The layer blobs --unpacked dropped (a root filesystem makes each
	// again) and those it kept, with why; empty without --unpacked.
	Dropped      []droppedJSON `json:"dropped"`
	KeptUnpacked []keptJSON    `json:"keptUnpacked"`
}

type droppedJSON struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	Rootfs string        `json:"rootfs"`
	State  string        `json:"state"`
}

type keptJSON struct {
	Digest digest.Digest `json:"digest"`
	Rootfs string        `json:"rootfs"`
	Reason string        `json:"reason"`
}

func gcCommand() *command {
	return &command{
		name:    "gc",
		summary: "Remove blobs and partial downloads that no image recorded in the store's index.json reaches; with --unpacked, also the layer blobs an unpacked root filesystem makes again.",
		usage:   "gc [--store DIR] [--verify] [--unpacked] [--json]",
		example: prog + " gc --store ./store --verify && " + prog + " gc --store ./store --unpacked",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var sf storeFlags
			var asJSON, verify, unpacked bool
			storeDirFlag(fs, &sf.store)
			fs.BoolVar(&verify, "verify", false, "hash every blob first and remove those whose content does not match their digest")
			fs.BoolVar(&unpacked, "unpacked", false, "also drop each layer blob that a root filesystem the image was unpacked into makes again exactly: the tree verifies clean and the blob's recipe is confirmed on the whole layer (rebuild --compressed puts it back)")
			jsonFlag(fs, &asJSON)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usagef("gc takes no arguments")
				}
				store, err := openExistingStore(sf.store)
				if err != nil {
					return err
				}
				opts := []fetch.GCOption{fetch.WithWaiting(func() {
					fmt.Fprintf(e.stderr, "waiting for the pulls and other writers using %s to finish...\n", store.Dir())
				})}
				if verify {
					opts = append(opts, fetch.WithVerify())
				}
				if unpacked {
					opts = append(opts, fetch.WithUnpacked(ocifetch.ConfirmUnpacked()))
				}
				res, err := store.GC(ctx, opts...)
				if err != nil {
					return err
				}
				if asJSON {
					out := gcJSON{Store: store.Dir(), Removed: orEmpty(res.Blobs), Corrupt: orEmpty(res.Corrupt), Partials: orEmpty(res.Partials),
						Pruned: []entryJSON{}, Bytes: res.Bytes}
					for _, m := range res.Entries {
						out.Pruned = append(out.Pruned, toEntry(m))
					}
					out.Dropped, out.KeptUnpacked = []droppedJSON{}, []keptJSON{}
					if unpacked {
						for _, d := range res.Dropped {
							out.Dropped = append(out.Dropped, droppedJSON{Digest: d.Digest, Size: d.Size, Rootfs: d.ReliesOn[0].Rootfs, State: d.ReliesOn[0].StateDir})
						}
						for _, k := range res.KeptUnpacked {
							out.KeptUnpacked = append(out.KeptUnpacked, keptJSON{Digest: k.Digest, Rootfs: k.Rootfs, Reason: oneLine(k.Reason)})
						}
					}
					return writeJSON(e, out)
				}
				for _, d := range res.Blobs {
					fmt.Fprintln(e.stdout, d)
				}
				for _, d := range res.Corrupt {
					fmt.Fprintf(e.stdout, "%s corrupt\n", d)
				}
				for _, d := range res.Dropped {
					fmt.Fprintf(e.stdout, "%s dropped: made again by %s\n", d.Digest, textQuote(d.ReliesOn[0].Rootfs))
				}
				for _, k := range res.KeptUnpacked {
					fmt.Fprintf(e.stderr, "kept %s (%s): %s\n", k.Digest, textQuote(k.Rootfs), textQuote(oneLine(k.Reason)))
				}
				fmt.Fprintf(e.stderr, "removed %d blobs and %d partial downloads, %s", len(res.Blobs), len(res.Partials), humanBytes(res.Bytes))
				if unpacked {
					fmt.Fprintf(e.stderr, "; %d layer blobs dropped, the root filesystems they were unpacked into standing in for them, %d kept", len(res.Dropped), len(res.KeptUnpacked))
				}
				if verify {
					fmt.Fprintf(e.stderr, "; %d corrupt blobs", len(res.Corrupt))
				}
				if len(res.Entries) > 0 {
					fmt.Fprintf(e.stderr, "; dropped %d signatures or other referrers of removed images", len(res.Entries))
				}
				fmt.Fprintln(e.stderr)
				return nil
			}
		},
	}
}

// openExistingStore opens the store at dir (default: the default store)
// without creating one: a mistyped --store must not leave an empty store
// somewhere and report success.
// storeDirFlag registers --store for the commands that work on an
// existing store.
func storeDirFlag(fs *flag.FlagSet, dir *string) {
	fs.StringVar(dir, "store", "", "the blob store `DIR` (default: $XDG_CACHE_HOME/ocifetch or ~/.cache/ocifetch)")
}

// jsonFlag registers the plain --json flag (resolve's says more).
func jsonFlag(fs *flag.FlagSet, asJSON *bool) {
	fs.BoolVar(asJSON, "json", false, "print one JSON object")
}

func openExistingStore(dir string) (*fetch.Store, error) {
	if dir == "" {
		d, err := fetch.DefaultStoreDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	if _, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile)); err != nil {
		return nil, errdefs.New(errdefs.ErrNotFound, "%s is not a store (no %s)", dir, ocispec.ImageLayoutFile)
	}
	return fetch.OpenStore(dir)
}

func orEmpty(ds []digest.Digest) []digest.Digest {
	if ds == nil {
		return []digest.Digest{}
	}
	return ds
}
