package main

import (
	"strings"
	"testing"

	flag "github.com/spf13/pflag"
)

// Help, from the binary: every command's --help, -h and "help COMMAND"
// exit 0 with the usage line, every flag, an example and the exit codes on
// stdout and nothing on stderr; no arguments, --help and "help" print the
// overview listing every command; an unknown command exits 2.
func TestCLIE2EHelp(t *testing.T) {
	t.Parallel()
	env := cliEnv(t)
	for _, args := range [][]string{nil, {"--help"}, {"-h"}, {"help"}} {
		r := mustRun(t, env, args...)
		if r.stderr != "" || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Exit status:") {
			t.Errorf("%v: stdout %q stderr %q", args, r.stdout, r.stderr)
		}
		for _, c := range commands() {
			if !strings.Contains(r.stdout, "  "+c.name+" ") {
				t.Errorf("%v: the overview does not list %s", args, c.name)
			}
		}
	}

	for _, c := range commands() {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.setup(fs)
		var flags []string
		fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
		if len(flags) == 0 {
			t.Errorf("%s has no flags", c.name)
		}
		var first string
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			r := mustRun(t, env, args...)
			out := r.stdout
			if r.stderr != "" {
				t.Errorf("%v: stderr %q", args, r.stderr)
			}
			if !strings.HasPrefix(out, "Usage: "+prog+" "+c.name+" ") || !strings.Contains(out, "\nExample:\n  "+prog+" "+c.name) ||
				!strings.Contains(out, "Flags:") || !strings.Contains(out, "Exit status:") {
				t.Errorf("%v: no usage line, example or exit codes:\n%s", args, out)
			}
			for _, f := range flags {
				if !strings.Contains(out, "--"+f+" ") && !strings.Contains(out, "--"+f+"\n") {
					t.Errorf("%v: flag --%s is not listed:\n%s", args, f, out)
				}
			}
			if first == "" {
				first = out
			} else if out != first {
				t.Errorf("%v prints other help than %s --help", args, c.name)
			}
		}
	}

	// Help and errors spell flags as the user types them: --flag, never
	// the single-dash form Go's flag package prints.
	for _, c := range commands() {
		r := runBuilt(t, env, c.name, "--help")
		if strings.Contains(r.stdout, "\n  -json") || strings.Contains(r.stdout, "  -store") {
			t.Errorf("%s --help lists single-dash long flags:\n%s", c.name, r.stdout)
		}
		r = runBuilt(t, env, c.name, "--bogus")
		if r.code != exitUsage || !strings.Contains(r.stderr, "--bogus") || strings.Contains(r.stderr, " -bogus") {
			t.Errorf("%s --bogus: exit %d, stderr %q; want exit 2 naming --bogus", c.name, r.code, r.stderr)
		}
	}

	for _, args := range [][]string{{"frobnicate"}, {"frobnicate", "--json"}, {"help", "frobnicate"}} {
		r := runBuilt(t, env, args...)
		if r.code != exitUsage || r.stdout != "" || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, `"frobnicate"`) {
			t.Errorf("%v: exit %d stdout %q stderr %q; want exit 2 and one line on stderr", args, r.code, r.stdout, r.stderr)
		}
	}
}
