package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/mediatype"
	"github.com/ocifetch/ocifetch/resolve"
)

// imageEntryJSON is one image of "images --json".
type imageEntryJSON struct {
	Name      string   `json:"name"`
	Platform  string   `json:"platform"`
	Platforms []string `json:"platforms"`
	Index     bool     `json:"index"`
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Size      int64    `json:"size"`
	// Kept is what the store keeps of it: ocifetch.KeptBlobs, KeptRecipe,
	// KeptBusy, KeptDrifted or KeptIncomplete.
	Kept string `json:"kept"`
	// Rootfs lists the root filesystems its dropped layer blobs rely on,
	// with what verify says of each.
	Rootfs []ocifetch.RootfsCheck `json:"rootfs"`
}

type imagesJSON struct {
	Store  string           `json:"store"`
	Images []imageEntryJSON `json:"images"`
}

// entryJSON names an index.json entry in "rm --json" and "gc --json".
type entryJSON struct {
	Name     string `json:"name"`
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
}

func toEntry(m ocispec.Descriptor) entryJSON {
	return entryJSON{Name: m.Annotations[ocispec.AnnotationRefName], Platform: platformOf(m.Platform), Digest: m.Digest.String()}
}

func platformOf(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	return resolve.FormatPlatform(resolve.Normalize(*p))
}

func joinOr(ss []string, none string) string {
	if len(ss) == 0 {
		return none
	}
	return strings.Join(ss, ", ")
}

func imagesCommand() *command {
	return &command{
		name:    "images",
		aliases: []string{"ls"},
		summary: "List the images in the store (alias ls): name, platform, digest, size, and whether every blob is kept or made again by a root filesystem.",
		usage:   "images [--store DIR] [--no-trunc] [--json]",
		example: prog + " images --store ./store",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var store string
			var asJSON, noTrunc bool
			storeDirFlag(fs, &store)
			fs.BoolVar(&noTrunc, "no-trunc", false, "print whole digests (default: the first 12 hex digits, which rm accepts)")
			jsonFlag(fs, &asJSON)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usagef("images takes no arguments")
				}
				s, err := openExistingStore(store)
				if err != nil {
					return err
				}
				images, err := ocifetch.ImagesKept(ctx, s)
				if err != nil {
					return err
				}
				out := imagesJSON{Store: s.Dir(), Images: []imageEntryJSON{}}
				for _, im := range images {
					j := imageEntryJSON{Name: im.Name, Platform: platformOf(im.Descriptor.Platform), Platforms: []string{},
						Index:  im.Descriptor.Platform == nil && isIndex(im.Descriptor.MediaType),
						Digest: im.Descriptor.Digest.String(), MediaType: im.Descriptor.MediaType, Size: im.Size, Kept: im.Kept,
						Rootfs: append([]ocifetch.RootfsCheck{}, im.Rootfs...)}
					for _, p := range im.Platforms {
						j.Platforms = append(j.Platforms, platformOf(&p))
					}
					out.Images = append(out.Images, j)
				}
				if asJSON {
					return writeJSON(e, out)
				}
				w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tPLATFORM\tDIGEST\tSIZE\tKEPT")
				for _, im := range out.Images {
					name, plat := im.Name, im.Platform
					if name == "" {
						name = "<none>"
					}
					if im.Index {
						plat = "all: " + joinOr(im.Platforms, "none")
					}
					d := im.Digest
					if !noTrunc {
						d = shortDigest(d)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", safe(name), safe(plat), d, humanBytes(im.Size), im.Kept)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				// Where dropped blobs are made again, and whether those
				// trees still can.
				for _, im := range out.Images {
					for _, r := range im.Rootfs {
						line := fmt.Sprintf("%s: layers made again by %s (%s)", im.Digest, textQuote(r.Rootfs), r.Status)
						if r.Detail != "" {
							line += ": " + textQuote(r.Detail)
						}
						fmt.Fprintln(e.stderr, line)
					}
				}
				return nil
			}
		},
	}
}

// shortDigest is "sha256:" and the first 12 hex digits of a digest, as
// images prints it (podman and docker print 12 too): a line fits 80
// columns, and rm takes it back.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}

func isIndex(mt string) bool { return mediatype.IsIndex(mt) }

// safe keeps control characters a crafted index.json could carry off the
// terminal.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func rmCommand() *command {
	return &command{
		name:    "rm",
		summary: "Remove images from the store's index.json: a NAME (every platform of it) or a DIGEST (or its first 12 hex digits). Their blobs go at the next gc.",
		usage:   "rm [--store DIR] [--json] NAME|DIGEST...",
		example: prog + " rm --store ./store docker.io/library/alpine:3.20 && " + prog + " gc --store ./store",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var store string
			var asJSON bool
			storeDirFlag(fs, &store)
			jsonFlag(fs, &asJSON)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) == 0 {
					return usagef("rm takes one or more names or digests")
				}
				s, err := openExistingStore(store)
				if err != nil {
					return err
				}
				out := struct {
					Store   string      `json:"store"`
					Removed []entryJSON `json:"removed"`
				}{Store: s.Dir(), Removed: []entryJSON{}}
				var missing []string
				for _, arg := range args {
					removed, err := removeImage(ctx, s, arg)
					if errdefs.KindOf(err) == errdefs.ErrNotFound {
						missing = append(missing, arg)
						continue
					}
					if err != nil {
						return err
					}
					for _, m := range removed {
						out.Removed = append(out.Removed, toEntry(m))
					}
				}
				if len(missing) == 0 && asJSON {
					return writeJSON(e, out)
				}
				if !asJSON {
					for _, r := range out.Removed {
						fmt.Fprintf(e.stdout, "removed %s %s %s\n", safe(r.Name), safe(r.Platform), r.Digest)
					}
				}
				if len(missing) > 0 {
					return errdefs.New(errdefs.ErrNotFound, "no image named %s in %s (removed %d entries); see '%s images'", joinOr(quoteAll(missing), ""), s.Dir(), len(out.Removed), prog)
				}
				return nil
			}
		},
	}
}

// removeImage removes what arg names: a digest, or the first 12 or more
// hex digits of one (as images prints it) that only one recorded digest
// starts with, a name as recorded, or a reference written the short way
// ("alpine" for "docker.io/library/alpine:latest").
func removeImage(ctx context.Context, s *fetch.Store, arg string) ([]ocispec.Descriptor, error) {
	if d, err := digestByPrefix(ctx, s, arg); err != nil {
		return nil, err
	} else if d != "" {
		arg = d
	}
	removed, err := s.Remove(ctx, arg)
	if errdefs.KindOf(err) != errdefs.ErrNotFound || digest.Digest(arg).Validate() == nil {
		return removed, err
	}
	src, oerr := resolve.Open(ctx, arg)
	if oerr != nil {
		return nil, err
	}
	if name := fetch.DefaultRefName(src.Reference()); name != "" && name != arg {
		return s.Remove(ctx, name)
	}
	return nil, err
}

// digestByPrefix returns the one recorded digest that arg, "sha256:" and
// at least 12 hex digits or those digits alone, abbreviates; "" when arg
// is no such prefix (or a whole digest), and an invalid_argument error
// when several digests share it.
func digestByPrefix(ctx context.Context, s *fetch.Store, arg string) (string, error) {
	hex := strings.TrimPrefix(arg, "sha256:")
	if len(hex) < 12 || len(hex) >= 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", nil
	}
	images, err := s.Images(ctx)
	if err != nil {
		return "", err
	}
	var found []string
	for _, im := range images {
		d := im.Descriptor.Digest.String()
		if strings.HasPrefix(d, "sha256:"+hex) && !slices.Contains(found, d) {
			found = append(found, d)
		}
	}
	if len(found) > 1 {
		return "", usagef("%s abbreviates %d digests of the store (%s); give more of it", arg, len(found), strings.Join(found, ", "))
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return "", nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
