// Command embed-pull shows how a container engine embeds ocifetch: one call
// puts an image's root filesystem on disk, with the engine's own platform,
// store and progress reporting, and typed errors it can act on.
//
//	go run ./examples/embed-pull [-platform linux/arm64] [-store DIR] REF DIR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

func main() {
	platform := flag.String("platform", "", "platform, OS/ARCH[/VARIANT] (default: this machine's)")
	store := flag.String("store", "", "blob store directory (default: ocifetch's cache)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: embed-pull [-platform P] [-store DIR] REF DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var ropts []resolve.Option
	if *platform != "" {
		p, err := resolve.ParsePlatform(*platform)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ropts = append(ropts, resolve.WithPlatform(p))
	}
	opts := []ocifetch.Option{
		ocifetch.WithResolveOptions(ropts...),
		// An engine reports progress its own way; here, finished blobs.
		ocifetch.WithFetchOptions(fetch.WithProgress(func(ev fetch.Event) {
			if ev.State == fetch.StateDone || ev.State == fetch.StateCached {
				fmt.Printf("blob %s %s (%d bytes)\n", ev.Digest, ev.State, ev.Total)
			}
		})),
		ocifetch.WithResolved(func(r *resolve.Resolved) {
			fmt.Printf("resolved %s to %s for %s\n", r.Reference, r.Manifest.Descriptor.Digest, resolve.FormatPlatform(r.Platform))
		}),
	}
	if *store != "" {
		opts = append(opts, ocifetch.WithStore(*store))
	}

	res, err := ocifetch.Unpack(ctx, flag.Arg(0), flag.Arg(1), opts...)
	switch {
	case errors.Is(err, errdefs.ErrPlatformNotFound):
		// The message lists the platforms the image has.
		fmt.Fprintln(os.Stderr, "no build for this platform:", err)
		os.Exit(3)
	case errors.Is(err, errdefs.ErrUnauthorized):
		fmt.Fprintln(os.Stderr, "log in first:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v\n", errdefs.KindOf(err), err)
		os.Exit(1)
	}
	for i, l := range res.Apply.Layers {
		fmt.Printf("layer %d: %d files, diffID %s verified\n", i+1, l.Files, l.DiffID)
	}
	fmt.Printf("rootfs ready at %s\n", flag.Arg(1))
}
