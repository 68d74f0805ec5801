package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"

	flag "github.com/spf13/pflag"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// registryFlags are the flags every command that talks to a registry takes.
type registryFlags struct {
	platform   string
	insecure   multiFlag
	authfile   string
	hostsDir   string
	tokenHosts multiFlag
	json       bool
	// debugOn gives the -v/--debug log once flags are parsed; dbg is it,
	// set by options (nil without the flag).
	debugOn func(e *env) *debugLog
	dbg     *debugLog
}

func (r *registryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.platform, "platform", "", "platform to resolve to, `OS/ARCH[/VARIANT]` (default: this machine's)")
	fs.Var(&r.insecure, "insecure-registry", "allow plain HTTP to `HOST[:PORT]`: HOST for every port of it, HOST:PORT for that one (repeatable; loopback is always allowed)")
	fs.StringVar(&r.authfile, "authfile", "", "read credentials from this Docker-config-format `FILE` (default: ~/.docker/config.json)")
	fs.StringVar(&r.hostsDir, "hosts-dir", "", "read mirrors from this containerd-style hosts `DIR` (DIR/HOST/hosts.toml)")
	fs.Var(&r.tokenHosts, "allow-token-host", "send credentials to the token server on this `HOST[:PORT]` although it is loopback, private or plain HTTP (repeatable)")
	fs.BoolVar(&r.json, "json", false, "print one JSON object; errors as {\"error\":{\"kind\",\"message\"}}")
	r.debugOn = registerDebug(fs)
}

// options turns the flags into resolve options. Warnings about the hosts
// configuration go to e's standard error.
func (r *registryFlags) options(e *env) ([]resolve.Option, error) {
	if r.dbg == nil && r.debugOn != nil {
		r.dbg = r.debugOn(e)
	}
	sopts := []source.Option{source.WithWarnings(func(msg string) { fmt.Fprintf(e.stderr, "warning: %s\n", oneLine(msg)) })}
	sopts = append(sopts, r.dbg.sourceOptions()...)
	if len(r.tokenHosts) > 0 {
		sopts = append(sopts, source.WithAllowTokenHost(r.tokenHosts...))
	}
	opts := []resolve.Option{resolve.WithSourceOptions(sopts...)}
	if r.platform != "" {
		p, err := resolve.ParsePlatform(r.platform)
		if err != nil {
			return nil, err
		}
		opts = append(opts, resolve.WithPlatform(p))
	}
	for _, h := range r.insecure {
		if _, err := source.ParseHost(h); err != nil {
			if scheme, rest, ok := strings.Cut(h, "://"); ok {
				host, _, _ := strings.Cut(rest, "/")
				bare := host
				if hn, _, err := net.SplitHostPort(host); err == nil {
					bare = hn
				}
				return nil, usagef("--insecure-registry %s: give the host without %s://: --insecure-registry %s (every port) or --insecure-registry %s", h, scheme, bare, host)
			}
			return nil, usagef("--insecure-registry %q: give HOST (every port) or HOST:PORT", h)
		}
	}
	if len(r.insecure) > 0 {
		opts = append(opts, resolve.WithInsecureRegistry(r.insecure...))
	}
	if r.authfile != "" {
		opts = append(opts, resolve.WithAuthfile(r.authfile))
	}
	if r.hostsDir != "" {
		opts = append(opts, resolve.WithHostsDir(r.hostsDir))
	}
	return opts, nil
}

// resolveArg resolves the one reference a command takes.
func (r *registryFlags) resolveArg(ctx context.Context, e *env, cmd string, args []string) (*resolve.Resolved, error) {
	if len(args) != 1 {
		return nil, usagef("%s takes exactly one reference, got %d arguments", cmd, len(args))
	}
	opts, err := r.options(e)
	if err != nil {
		return nil, err
	}
	res, err := resolve.Resolve(ctx, args[0], opts...)
	if err == nil {
		r.dbg.resolved(res.Reference, res.Manifest.Descriptor.Digest.String())
	}
	return res, err
}

func resolveCommand() *command {
	return &command{
		name:    "resolve",
		summary: "Resolve a reference through its index to one platform's manifest, config and layers, verifying each.",
		usage:   "resolve [--platform OS/ARCH[/VARIANT]] [--json] [-v] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... [--policy FILE | --insecure-policy] REF",
		example: prog + " resolve --platform linux/arm64 --json docker.io/library/alpine:3.20",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var rf registryFlags
			var pf policyFlags
			rf.register(fs)
			pf.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				res, err := rf.resolveArg(ctx, e, "resolve", args)
				if err != nil {
					return err
				}
				if err := pf.verify(ctx, e, res); err != nil {
					return err
				}
				if rf.json {
					out := resolvedJSON(res)
					out.Trust = pf.trust()
					return writeJSON(e, out)
				}
				pf.say(e, false)
				printResolved(e, res)
				return nil
			}
		},
	}
}

// descJSON is a descriptor as the CLI prints it.
type descJSON struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type layerJSON struct {
	descJSON
	DiffID string `json:"diffID"`
}

// resolveOutput is the JSON contract of "resolve --json"; pull adds to it.
type resolveOutput struct {
	Reference string      `json:"reference"`
	Platform  string      `json:"platform"`
	Platforms []string    `json:"platforms"`
	Index     *descJSON   `json:"index"`
	Indexes   []descJSON  `json:"indexes"`
	Manifest  descJSON    `json:"manifest"`
	Config    descJSON    `json:"config"`
	Layers    []layerJSON `json:"layers"`
	Trust     *trustJSON  `json:"trust,omitempty"`
}

func toDesc(d ocispec.Descriptor) descJSON {
	return descJSON{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size}
}

// chosenPlatform is the platform of the image resolved, "" when its
// config names none (crane append without a base makes such images; as
// images prints it): normalized, the empty platform took this machine's
// OS and printed as "linux/", which is no platform at all.
func chosenPlatform(p ocispec.Platform) string {
	if p.OS == "" && p.Architecture == "" {
		return ""
	}
	return resolve.FormatPlatform(resolve.Normalize(p))
}

func resolvedJSON(r *resolve.Resolved) resolveOutput {
	out := resolveOutput{
		Reference: r.Reference,
		Platform:  chosenPlatform(r.Platform),
		Platforms: []string{},
		Indexes:   []descJSON{},
		Manifest:  toDesc(r.Manifest.Descriptor),
		Config:    toDesc(r.Config.Descriptor),
		Layers:    []layerJSON{},
	}
	for _, p := range r.Platforms {
		out.Platforms = append(out.Platforms, resolve.FormatPlatform(p))
	}
	for i, b := range r.Indexes {
		d := toDesc(b.Descriptor)
		if i == 0 {
			out.Index = &d
		}
		out.Indexes = append(out.Indexes, d)
	}
	for _, l := range r.Layers {
		out.Layers = append(out.Layers, layerJSON{descJSON: toDesc(l.Descriptor), DiffID: l.DiffID.String()})
	}
	return out
}

func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	// The output is read by programs, not embedded in HTML: "a > b" stays
	// as it is rather than becoming "a \u003e b".
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func printResolved(e *env, r *resolve.Resolved) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "reference\t%s\n", r.Reference)
	for _, b := range r.Indexes {
		fmt.Fprintf(w, "index\t%s\t%d bytes\t%s\n", b.Descriptor.Digest, b.Descriptor.Size, b.Descriptor.MediaType)
	}
	fmt.Fprintf(w, "manifest\t%s\t%d bytes\t%s\n", r.Manifest.Descriptor.Digest, r.Manifest.Descriptor.Size, r.Manifest.Descriptor.MediaType)
	if p := chosenPlatform(r.Platform); p != "" {
		// The config's os and architecture are the image's strings: raw,
		// "linux\x1b[2J\nverify: ok" cleared the screen and forged a line.
		fmt.Fprintf(w, "platform\t%s\n", textQuote(p))
	} else {
		fmt.Fprintf(w, "platform\tnone: the config names no os and no architecture\n")
	}
	fmt.Fprintf(w, "config\t%s\t%d bytes\t%s\n", r.Config.Descriptor.Digest, r.Config.Descriptor.Size, r.Config.Descriptor.MediaType)
	var total int64
	for i, l := range r.Layers {
		fmt.Fprintf(w, "layer %d\t%s\t%d bytes\t%s\n", i+1, l.Digest, l.Size, l.MediaType)
		fmt.Fprintf(w, "  diffID\t%s\n", l.DiffID)
		total += l.Size
	}
	fmt.Fprintf(w, "total\t%d layers\t%d bytes\n", len(r.Layers), total)
	w.Flush()
}
