package main

import (
	"context"
	"fmt"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch/resolve"
)

// errInvalid ends validate with the verification exit status once the
// problems have been printed.
type errInvalid struct{ n int }

func (e errInvalid) Error() string { return fmt.Sprintf("%d problems found", e.n) }

func validateCommand() *command {
	return &command{
		name:    "validate",
		summary: "Check every index, manifest and config reachable from REF against the image spec, for every platform.",
		usage:   "validate [--json] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... REF",
		example: prog + " validate oci-archive:image.tar",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var rf registryFlags
			rf.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("validate takes exactly one reference, got %d arguments", len(args))
				}
				opts, err := rf.options(e)
				if err != nil {
					return err
				}
				src, err := resolve.Open(ctx, args[0], opts...)
				if err != nil {
					return err
				}
				problems, err := resolve.Validate(ctx, src, opts...)
				if err != nil {
					return err
				}
				if rf.json {
					if problems == nil {
						problems = []resolve.Problem{}
					}
					if err := writeJSON(e, map[string]any{"reference": src.Reference(), "valid": len(problems) == 0, "problems": problems}); err != nil {
						return err
					}
				} else {
					for _, p := range problems {
						fmt.Fprintln(e.stdout, p.String())
					}
					if len(problems) == 0 {
						fmt.Fprintf(e.stdout, "%s: valid\n", src.Reference())
					}
				}
				if len(problems) > 0 {
					return errInvalid{len(problems)}
				}
				return nil
			}
		},
	}
}
