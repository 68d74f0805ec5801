// Command oci-image-docker-registry-fetch gets container images from a
// registry onto disk: resolve a name to a platform's manifest, fetch its
// blobs verified into a store, and apply its layers to a directory.
//
// Run it with no arguments, or with "help COMMAND", for usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Exit codes. Scripts rely on them; errdefs holds the table and
// docs/cli.md prints it.
const (
	exitOK           = errdefs.ExitOK
	exitUsage        = errdefs.ExitUsage
	exitNotFound     = errdefs.ExitNotFound
	exitVerification = errdefs.ExitVerification
)

// command is one verb of the CLI.
type command struct {
	name    string
	aliases []string
	summary string
	usage   string // the line after the program name, flags before positional arguments
	example string
	// setup registers the command's flags on fs and returns the function
	// that runs it with the positional arguments, once flags are parsed.
	setup func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
}

// env is what a command writes to; tests substitute buffers.
type env struct {
	stdout, stderr io.Writer
	json           bool // the command was asked for JSON; errors are printed as JSON too
}

const prog = "oci-image-docker-registry-fetch"

func commands() []*command {
	return []*command{
		demoCommand(),
		resolveCommand(),
		inspectCommand(),
		pullCommand(),
		unpackCommand(),
		bundleCommand(),
		rebuildCommand(),
		verifyCommand(),
		gcCommand(),
		imagesCommand(),
		rmCommand(),
		validateCommand(),
		versionCommand(),
	}
}

func main() {
	ctx, sig, stop := notifyContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if n := sig(); n != 0 && code != exitOK {
		// Whatever the failure looked like on its way out, it is the
		// signal's doing: 128 + its number, as shells report it.
		code = 128 + n
	}
	os.Exit(code)
}

// notifyContext cancels its context on the first SIGINT or SIGTERM, so
// that the command removes what it had not finished and returns; a second
// signal exits at once with the signal's status. sig reports the number of
// the first signal received (0 for none).
func notifyContext(parent context.Context) (ctx context.Context, sig func() int, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	var first atomic.Int32
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				n := int32(s.(syscall.Signal))
				if !first.CompareAndSwap(0, n) {
					os.Exit(128 + int(n))
				}
				cancel()
			case <-done:
				return
			}
		}
	}()
	return ctx, func() int { return int(first.Load()) }, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 1 && args[0] == "--version" {
		args = []string{"version"}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || (args[0] == "help" && len(args) == 1) {
		printOverview(stdout)
		return exitOK
	}
	if args[0] == "help" {
		args = []string{args[1], "--help"}
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "%s: unknown command %q; run '%s --help'\n", prog, args[0], prog)
		return exitUsage
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	runCmd := c.setup(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if f := fs.Lookup("json"); f != nil && f.Value.String() == "true" {
		e.json = true
	}
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, c, fs)
		return exitOK
	}
	if err != nil {
		if !e.json && containsFlag(args[1:], "json") {
			e.json = true
		}
		return report(e, c, usagef("%s; see '%s %s --help'", flagError(err), prog, c.name))
	}
	if err := runCmd(ctx, e, pos); err != nil {
		var inv errInvalid
		var failed errFailed
		if errors.As(err, &inv) || errors.As(err, &failed) {
			// The problems are the output; only the status is left to give.
			if !e.json {
				fmt.Fprintf(stderr, "%s %s: %v\n", prog, c.name, err)
			}
			return exitVerification
		}
		return report(e, c, err)
	}
	return exitOK
}

// containsFlag reports whether a boolean flag appears among raw arguments,
// so that even a usage error is reported as JSON when JSON was asked for.
func containsFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--"+name || a == "-"+name || a == "--"+name+"=true" || a == "-"+name+"=true" {
			return true
		}
	}
	return false
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c
		}
	}
	return nil
}

// flagError rewords pflag's error for a number or a boolean that does
// not parse, which quoted strconv ("strconv.ParseInt: parsing \"abc\":
// invalid syntax"): library text that tells a user nothing. pflag's
// InvalidValueError wraps strconv's NumError, so nothing is read from
// the message.
func flagError(err error) string {
	var inv *flag.InvalidValueError
	var num *strconv.NumError
	if !errors.As(err, &inv) || !errors.As(err, &num) {
		return err.Error()
	}
	want := "want a whole number"
	switch {
	case num.Func == "ParseBool":
		want = "want true or false"
	case errors.Is(num.Err, strconv.ErrRange):
		want = "the number is too large"
	}
	name := "--" + inv.GetFlag().Name
	if sh := inv.GetFlag().Shorthand; sh != "" && inv.GetFlag().ShorthandDeprecated == "" {
		name = "-" + sh + ", " + name
	}
	return fmt.Sprintf("invalid argument %q for %q flag: %s", inv.GetValue(), name, want)
}

// usageError is a mistake in how the command was called.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// report prints err as one line (or one JSON object) and picks the exit code.
func report(e *env, c *command, err error) int {
	var ue *usageError
	kind := errdefs.KindOf(err)
	if errors.As(err, &ue) {
		kind = errdefs.ErrInvalidArgument
	}
	msg := oneLine(err.Error())
	if e.json {
		out := map[string]any{"error": map[string]string{"kind": string(kind), "message": msg}}
		enc := json.NewEncoder(e.stdout)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(out)
	} else {
		fmt.Fprintf(e.stderr, "%s %s: %s\n", prog, c.name, msg)
	}
	if ue != nil {
		return exitUsage
	}
	return errdefs.ExitCode(kind)
}

// absPath is p made absolute for JSON output, whose path fields are all
// absolute, so that a program reading them need not know the working
// directory of the command. p is returned as it is if that fails.
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// oneLine makes an error message one line that is safe on a terminal.
// Messages quote the names they take from images, but an error a library
// wraps (an lstat of a hard link's target) can carry one raw: an escape
// sequence there would reach the terminal, so every character that does
// not print (and every byte of invalid UTF-8) is shown escaped.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) && r != ' ' }) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r != ' ' && !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func printOverview(w io.Writer) {
	fmt.Fprintf(w, "%s gets container images from a registry onto disk, verified.\n\nUsage:\n  %s COMMAND [FLAGS] ARGS\n\nCommands:\n", prog, prog)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s help COMMAND' for a command's flags and an example.\n", prog)
	fmt.Fprint(w, exitCodesHelp)
}

const exitCodesHelp = `
Exit status:
  0    success
  1    other failure: the disk is full, permission denied, an internal error
  2    usage error: bad flag, argument, reference or platform
  3    not found, unauthorized, or no image for the platform
  4    verification failed: digest or size mismatch, invalid, unsupported
       or not reproducible content
  5    unsafe content: a layer tried to reach outside the target
  6    network: the registry could not be reached or kept failing
  7    busy: another unpack holds the target
  8    untrusted: the trust policy refused the image
  130  interrupted by SIGINT; 143 by SIGTERM
`

func printUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n\nFlags:\n", prog, c.usage, c.summary)
	fmt.Fprint(w, fs.FlagUsages())
	if c.example != "" {
		fmt.Fprintf(w, "\nExample:\n  %s\n", c.example)
	}
	fmt.Fprint(w, exitCodesHelp)
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("CMD --json REF" and "CMD REF --json" alike); "--" ends flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
func (m *multiFlag) Type() string       { return "strings" }
