package main

import (
	"context"
	"fmt"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch/resolve"
)

// validateJSON is "validate --json".
type validateJSON struct {
	Reference    string                `json:"reference"`
	Valid        bool                  `json:"valid"`
	Problems     []resolve.Problem     `json:"problems"`
	Attestations []resolve.Attestation `json:"attestations"`
}

// errInvalid ends validate with the verification exit status once the
// problems have been printed.
type errInvalid struct{ n int }

func (e errInvalid) Error() string { return fmt.Sprintf("%d problems found", e.n) }

func validateCommand() *command {
	return &command{
		name:    "validate",
		summary: "Check every index, manifest and config reachable from REF against the image spec, for every platform.",
		usage:   "validate [--platform OS/ARCH[/VARIANT]] [--json] [-v] [--insecure-registry HOST]... [--authfile FILE] [--hosts-dir DIR] [--allow-token-host HOST]... REF",
		example: prog + " validate oci-archive:image.tar",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var rf registryFlags
			rf.register(fs)
			fs.Lookup("platform").Usage = "validate only the manifest of this `OS/ARCH[/VARIANT]` (default: every platform)"
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
				v, err := resolve.ValidateImage(ctx, src, opts...)
				if err != nil {
					return err
				}
				rf.dbg.printf("validated %s in %s", src.Reference(), ms(rf.dbg.elapsed()))
				problems, atts := v.Problems, v.Attestations
				if problems == nil {
					problems = []resolve.Problem{}
				}
				if atts == nil {
					atts = []resolve.Attestation{}
				}
				if rf.json {
					if err := writeJSON(e, validateJSON{Reference: src.Reference(), Valid: len(problems) == 0, Problems: problems, Attestations: atts}); err != nil {
						return err
					}
				} else {
					for _, p := range problems {
						fmt.Fprintln(e.stdout, textQuote(p.String()))
					}
					for _, a := range atts {
						subject := a.Platform
						if subject == "" {
							subject = a.Subject
						}
						fmt.Fprintf(e.stdout, "attestation %s of %s: %s\n", a.Digest, textQuote(subject), textQuote(joinOr(a.PredicateTypes, "no statements")))
					}
					if len(problems) == 0 {
						fmt.Fprintf(e.stdout, "%s: valid\n", textQuote(src.Reference()))
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
