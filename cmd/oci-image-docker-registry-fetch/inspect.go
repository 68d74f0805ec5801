package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"

	flag "github.com/spf13/pflag"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

func inspectCommand() *command {
	return &command{
		name:    "inspect",
		summary: "Show what an image is (platforms, layers, sizes, config, signatures) without downloading its layers.",
		usage:   "inspect [--platform OS/ARCH[/VARIANT]] [--store DIR] [--json] [-v] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... [--policy FILE | --insecure-policy] REF",
		example: prog + " inspect --platform linux/amd64 docker.io/library/debian:bookworm",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var rf registryFlags
			var pf policyFlags
			var storeDir string
			rf.register(fs)
			pf.register(fs)
			fs.StringVar(&storeDir, "store", "", "the blob store `DIR` whose unpacks say which layers are reproducible (default: $XDG_CACHE_HOME/ocifetch or ~/.cache/ocifetch, if it exists)")
			return func(ctx context.Context, e *env, args []string) error {
				res, err := rf.resolveArg(ctx, e, "inspect", args)
				if err != nil {
					return err
				}
				out := inspectJSON(res)
				if storeDir == "" {
					storeDir, _ = fetch.DefaultStoreDir()
				}
				// Read only: no lock, nothing made.
				out.Reproducible = ocifetch.LayersReproducible(storeDir, res)
				if out.Signatures, out.SignatureError, err = inspectSignatures(ctx, e, &pf, res); err != nil {
					return err
				}
				if rf.json {
					return writeJSON(e, out)
				}
				printInspect(e, out)
				return nil
			}
		},
	}
}

type platformEntry struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
}

type configSummary struct {
	Created      string            `json:"created,omitempty"`
	Author       string            `json:"author,omitempty"`
	User         string            `json:"user,omitempty"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"`
	Volumes      []string          `json:"volumes,omitempty"`
	StopSignal   string            `json:"stopSignal,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	History      int               `json:"history"`
}

// servedEntry says which host (or file) answered for one document: with
// mirrors, a document may come from any of them or from the upstream.
type servedEntry struct {
	Document string `json:"document"` // "index", "manifest" or "config"
	Digest   string `json:"digest"`
	From     string `json:"from"`
}

// attestationEntry is a build attestation the index lists: not a
// platform, but about one.
type attestationEntry struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Subject is the manifest it attests, Platform that manifest's
	// platform in the index ("" when the index does not list it).
	Subject  string `json:"subject"`
	Platform string `json:"platform"`
}

type inspectOutput struct {
	resolveOutput
	Served           []servedEntry      `json:"served"`
	Available        []platformEntry    `json:"available"`
	Attestations     []attestationEntry `json:"attestations"`
	CompressedSize   int64              `json:"compressedSize"`
	ConfigSummary    configSummary      `json:"configSummary"`
	ManifestAnnotate map[string]string  `json:"annotations"`
	// Signatures are those the registry holds for the digest the
	// reference resolved to; SignatureError says why they could not be
	// listed.
	Signatures     []signatureJSON `json:"signatures"`
	SignatureError string          `json:"signatureError,omitempty"`
	// Reproducible says per layer whether a root filesystem the store
	// records makes its blob again.
	Reproducible []ocifetch.LayerReproducible `json:"reproducible"`
}

func inspectJSON(r *resolve.Resolved) inspectOutput {
	out := inspectOutput{resolveOutput: resolvedJSON(r), Available: []platformEntry{}, Attestations: []attestationEntry{}}
	for _, b := range r.Indexes {
		out.Served = append(out.Served, servedEntry{"index", b.Descriptor.Digest.String(), b.From})
	}
	out.Served = append(out.Served,
		servedEntry{"manifest", r.Manifest.Descriptor.Digest.String(), r.Manifest.From},
		servedEntry{"config", r.Config.Descriptor.Digest.String(), r.Config.From})
	if len(r.Indexes) > 0 {
		var idx ocispec.Index
		if json.Unmarshal(r.Indexes[len(r.Indexes)-1].Data, &idx) == nil {
			platformOf := map[string]string{}
			for _, m := range idx.Manifests {
				if m.Platform != nil && !resolve.IsAttestation(m) {
					platformOf[m.Digest.String()] = resolve.FormatPlatform(*m.Platform)
				}
			}
			for _, m := range idx.Manifests {
				if resolve.IsAttestation(m) {
					subject := m.Annotations[resolve.AnnotationReferenceDigest]
					out.Attestations = append(out.Attestations, attestationEntry{Digest: m.Digest.String(), Size: m.Size, Subject: subject, Platform: platformOf[subject]})
					continue
				}
				p := "unknown"
				if m.Platform != nil {
					p = resolve.FormatPlatform(*m.Platform)
				}
				out.Available = append(out.Available, platformEntry{Platform: p, Digest: m.Digest.String(), Size: m.Size})
			}
		}
	}
	for _, l := range r.Layers {
		out.CompressedSize += l.Size
	}
	c := r.Image.Config
	s := configSummary{
		Author: r.Image.Author, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env,
		WorkingDir: c.WorkingDir, StopSignal: c.StopSignal, Labels: c.Labels, History: len(r.Image.History),
	}
	if r.Image.Created != nil {
		s.Created = r.Image.Created.UTC().Format("2006-01-02T15:04:05Z")
	}
	for p := range c.ExposedPorts {
		s.ExposedPorts = append(s.ExposedPorts, p)
	}
	for v := range c.Volumes {
		s.Volumes = append(s.Volumes, v)
	}
	sort.Strings(s.ExposedPorts)
	sort.Strings(s.Volumes)
	out.ConfigSummary = s
	out.ManifestAnnotate = r.ImageManifest.Annotations
	if out.ManifestAnnotate == nil {
		out.ManifestAnnotate = map[string]string{}
	}
	return out
}

// printInspect prints what the image says about itself; every string
// the image chose goes through textQuote.
func printInspect(e *env, o inspectOutput) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	q := textQuote
	fmt.Fprintf(w, "reference\t%s\n", q(o.Reference))
	if o.Index != nil {
		fmt.Fprintf(w, "index\t%s\n", o.Index.Digest)
	}
	for _, p := range o.Available {
		mark := " "
		if p.Digest == o.Manifest.Digest {
			mark = "*"
		}
		fmt.Fprintf(w, "  %s %s\t%s\n", mark, q(p.Platform), p.Digest)
	}
	for _, a := range o.Attestations {
		of := a.Platform
		if of == "" {
			of = a.Subject
		}
		fmt.Fprintf(w, "attestation\t%s of %s\n", a.Digest, q(of))
	}
	fmt.Fprintf(w, "manifest\t%s (%s)\n", o.Manifest.Digest, q(o.Platform))
	fmt.Fprintf(w, "config\t%s\n", o.Config.Digest)
	c := o.ConfigSummary
	if c.Created != "" {
		fmt.Fprintf(w, "created\t%s\n", q(c.Created))
	}
	if len(c.Entrypoint) > 0 {
		fmt.Fprintf(w, "entrypoint\t%s\n", textQuoteAll(c.Entrypoint))
	}
	if len(c.Cmd) > 0 {
		fmt.Fprintf(w, "cmd\t%s\n", textQuoteAll(c.Cmd))
	}
	if c.User != "" {
		fmt.Fprintf(w, "user\t%s\n", q(c.User))
	}
	if c.WorkingDir != "" {
		fmt.Fprintf(w, "workdir\t%s\n", q(c.WorkingDir))
	}
	for _, v := range c.Env {
		fmt.Fprintf(w, "env\t%s\n", q(v))
	}
	for _, p := range c.ExposedPorts {
		fmt.Fprintf(w, "port\t%s\n", q(p))
	}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "label\t%s=%s\n", q(k), q(c.Labels[k]))
	}
	for i, l := range o.Layers {
		fmt.Fprintf(w, "layer %d\t%s\t%s\t%s\n", i+1, l.Digest, humanBytes(l.Size), q(l.MediaType))
	}
	for _, r := range o.Reproducible {
		// "recipe", not wider than the other keys: the columns stay.
		fmt.Fprintf(w, "recipe\tlayer %d: %s\n", r.Layer, reproducibleText(r))
	}
	for _, d := range o.Served {
		fmt.Fprintf(w, "served\t%s %s by %s\n", d.Document, d.Digest, d.From)
	}
	fmt.Fprintf(w, "size\t%s compressed in %d layers\n", humanBytes(o.CompressedSize), len(o.Layers))
	printSignatures(w, o)
	w.Flush()
}

// reproducibleText is inspect's line for a layer's blob.
func reproducibleText(r ocifetch.LayerReproducible) string {
	switch r.How {
	case "tar":
		return "yes (uncompressed: the tar itself)"
	case "confirmed":
		return "yes, recipe confirmed (" + textQuote(r.Recipe) + ") by " + textQuote(r.Rootfs)
	case "candidate":
		return "best effort, recipe not confirmed (" + textQuote(r.Recipe) + ") by " + textQuote(r.Rootfs)
	case "no":
		return "no (" + textQuote(r.Reason) + ", in " + textQuote(r.Rootfs) + ")"
	}
	return "unknown (no unpack of it recorded in the store)"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
