package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
)

// stateFlags locate the metadata of a materialized root filesystem.
type stateFlags struct {
	store string
	state string
	json  bool
}

func (s *stateFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.store, "store", "", "the blob store `DIR` (accepted for symmetry; rebuilding needs only the tree and its metadata)")
	fs.StringVar(&s.state, "state", "", "the state `DIR` unpack recorded (default: .ROOTFS.ocifetch beside ROOTFS)")
	fs.BoolVar(&s.json, "json", false, "print one JSON object")
}

func (s *stateFlags) dir(rootfs string) string {
	if s.state != "" {
		return s.state
	}
	return apply.DefaultStateDir(rootfs)
}

// errFailed ends a command with the verification exit status after its
// own output said what failed.
type errFailed struct{ msg string }

func (e errFailed) Error() string { return e.msg }

func rebuildCommand() *command {
	return &command{
		name:    "rebuild",
		summary: "Rebuild a layer's tar bit-for-bit from an unpacked root filesystem and its tar-split metadata, or check every layer.",
		usage:   "rebuild [--store DIR] [--state DIR] [--layer N|DIFFID] [--all] [--check] [-o FILE|DIR] [--json] ROOTFS",
		example: prog + " rebuild --layer 1 -o layer1.tar ./rootfs && " + prog + " rebuild --all --check ./rootfs",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var sf stateFlags
			var layer, out string
			var all, check bool
			sf.register(fs)
			fs.StringVar(&layer, "layer", "", "the layer to rebuild: its position `N` (1 is the lowest) or its diffID")
			fs.BoolVar(&all, "all", false, "rebuild every layer")
			fs.BoolVar(&check, "check", false, "with --all: check each rebuilt layer against its diffID, one line per layer, and write nothing")
			fs.StringVarP(&out, "output", "o", "", "write the tar to `FILE` (default: standard output); with --all, into DIR as <diffID>.tar")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("rebuild takes one root filesystem directory, got %d arguments", len(args))
				}
				rootfs := args[0]
				state := sf.dir(rootfs)
				switch {
				case all && layer != "":
					return usagef("--layer and --all exclude each other")
				case all && !check && out == "":
					return usagef("--all needs --check, or -o DIR to write the layers")
				case !all && layer == "":
					return usagef("name a layer with --layer N|DIFFID, or use --all")
				case check && !all:
					return usagef("--check goes with --all")
				case !all && sf.json && (out == "" || out == "-"):
					// Standard output cannot carry both a tar and the
					// JSON object; binary never goes there with --json.
					return usagef("--json with --layer needs -o FILE: the tar goes to FILE and the JSON to standard output")
				}
				if all {
					return rebuildAll(ctx, e, state, rootfs, out, check, sf.json)
				}
				st, err := apply.Status(state)
				if err != nil {
					return err
				}
				d, err := pickLayer(st, layer)
				if err != nil {
					return err
				}
				n, err := rebuildOne(ctx, e, state, rootfs, d, out)
				if err != nil || !sf.json {
					return err
				}
				pos := 0
				for i, l := range st.Layers {
					if l.DiffID == d {
						pos = i + 1
					}
				}
				return writeJSON(e, rebuildJSON{Rootfs: absPath(rootfs), Layer: pos, DiffID: d.String(), Output: absPath(out), Bytes: n})
			}
		},
	}
}

// pickLayer maps "N" (1-based) or a diffID to a layer's diffID.
func pickLayer(st *apply.State, s string) (digest.Digest, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > len(st.Layers) {
			return "", errdefs.New(errdefs.ErrNotFound, "there is no layer %d: the image has %d layers", n, len(st.Layers))
		}
		return st.Layers[n-1].DiffID, nil
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", errdefs.Wrap(err, errdefs.ErrInvalidArgument, "--layer %q is neither a position nor a diffID", s)
	}
	return d, nil
}

// rebuildJSON is "rebuild --layer N -o FILE --json".
type rebuildJSON struct {
	Rootfs string `json:"rootfs"`
	Layer  int    `json:"layer"`
	DiffID string `json:"diffID"`
	Output string `json:"output"`
	Bytes  int64  `json:"bytes"`
}

// rebuildOne writes one layer to out (published whole on success, so a
// failed rebuild leaves no file) or to standard output, and returns its
// length.
func rebuildOne(ctx context.Context, e *env, state, rootfs string, d digest.Digest, out string) (int64, error) {
	if out == "" || out == "-" {
		cw := &countWriter{w: e.stdout}
		err := apply.Rebuild(ctx, state, rootfs, d, cw)
		return cw.n, err
	}
	tmp, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", out)
	}
	defer tmp.Abort()
	cw := &countWriter{w: tmp}
	if err := apply.Rebuild(ctx, state, rootfs, d, cw); err != nil {
		return 0, err
	}
	return cw.n, tmp.Commit()
}

type layerCheckJSON struct {
	Layer  int    `json:"layer"`
	DiffID string `json:"diffID"`
	Bytes  int64  `json:"bytes"`
	OK     bool   `json:"ok"`
	Kind   string `json:"kind,omitempty"`
	Error  string `json:"error,omitempty"`
}

func rebuildAll(ctx context.Context, e *env, state, rootfs, outDir string, check, asJSON bool) error {
	var res []apply.LayerCheck
	var err error
	if check {
		res, err = apply.Check(ctx, state, rootfs)
	} else {
		res, err = rebuildInto(ctx, state, rootfs, outDir)
	}
	if err != nil {
		return err
	}
	failed := 0
	var rows []layerCheckJSON
	for _, c := range res {
		row := layerCheckJSON{Layer: c.Index + 1, DiffID: c.DiffID.String(), Bytes: c.Bytes, OK: c.Err == nil}
		if c.Err != nil {
			failed++
			row.Kind, row.Error = string(errdefs.KindOf(c.Err)), oneLine(c.Err.Error())
		}
		rows = append(rows, row)
		if !asJSON {
			if c.Err == nil {
				fmt.Fprintf(e.stdout, "layer %d %s ok %d bytes\n", c.Index+1, c.DiffID, c.Bytes)
			} else {
				fmt.Fprintf(e.stdout, "layer %d %s FAILED %s: %s\n", c.Index+1, c.DiffID, row.Kind, textQuote(row.Error))
			}
		}
	}
	if asJSON {
		if err := writeJSON(e, map[string]any{"rootfs": absPath(rootfs), "layers": rows, "ok": failed == 0}); err != nil {
			return err
		}
	}
	if failed > 0 {
		return errFailed{fmt.Sprintf("%d of %d layers did not rebuild to their diffID", failed, len(res))}
	}
	return nil
}

// rebuildInto writes every layer into outDir as <hex of diffID>.tar.
// Each file is published whole through atomicfile only once its layer
// rebuilt to its diffID: it is written anonymously (O_TMPFILE) and linked
// under its final name by a rename that replaces whatever is there, a
// planted symbolic link included, without following it; a signal or a
// kill leaves nothing partial under a final name.
func rebuildInto(ctx context.Context, state, rootfs, outDir string) ([]apply.LayerCheck, error) {
	st, err := apply.CheckComplete(state, rootfs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", outDir)
	}
	// Temporaries an earlier run left where O_TMPFILE is missing.
	if err := atomicfile.Clean(outDir); err != nil {
		return nil, err
	}
	var res []apply.LayerCheck
	for i, l := range st.Layers {
		f, err := atomicfile.Create(filepath.Join(outDir, l.DiffID.Encoded()+".tar"), 0o644)
		if err != nil {
			return res, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", outDir)
		}
		cw := &countWriter{w: f}
		err = apply.Rebuild(ctx, state, rootfs, l.DiffID, cw)
		if err == nil {
			err = f.Commit()
		}
		f.Abort()
		res = append(res, apply.LayerCheck{Index: i, DiffID: l.DiffID, Bytes: cw.n, Err: err})
		if ctx.Err() != nil {
			return res, errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "rebuilding")
		}
	}
	return res, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func verifyCommand() *command {
	return &command{
		name:    "verify",
		summary: "Compare an unpacked root filesystem with what unpack left, and print each path that changed, disappeared or appeared.",
		usage:   "verify [--store DIR] [--state DIR] [--ignore-xattr NAME]... [--dir-mtimes] [--upgrade] [--json] ROOTFS",
		example: prog + " verify ./rootfs",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var sf stateFlags
			var ignore multiFlag
			var dirMtimes, upgrade bool
			sf.register(fs)
			fs.Var(&ignore, "ignore-xattr", "do not compare the extended attribute `NAME` (repeatable; security.selinux is never compared)")
			fs.BoolVar(&dirMtimes, "dir-mtimes", false, "compare the modification times of directories too")
			fs.BoolVar(&upgrade, "upgrade", false, "first bring a tree unpacked by an older version (state format 1) to this version's state, from the layers the tree rebuilds")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("verify takes one root filesystem directory, got %d arguments", len(args))
				}
				state := sf.dir(args[0])
				if upgrade {
					done, err := apply.Upgrade(ctx, state, args[0])
					if err != nil {
						return err
					}
					if done && !sf.json {
						fmt.Fprintf(e.stderr, "upgraded %s to this version's state format\n", state)
					}
				}
				opts := []apply.Option{apply.WithIgnoredXattrs(append(append([]string{}, apply.DefaultIgnoredXattrs...), ignore...)...)}
				if dirMtimes {
					opts = append(opts, apply.WithDirMtimes())
				}
				drift, err := apply.Verify(ctx, state, args[0], opts...)
				if err != nil {
					return err
				}
				if sf.json {
					if drift == nil {
						drift = []apply.Drift{}
					}
					if err := writeJSON(e, map[string]any{"rootfs": absPath(args[0]), "clean": len(drift) == 0, "drift": drift}); err != nil {
						return err
					}
				} else {
					for _, d := range drift {
						line := string(d.Kind) + " " + textQuote(d.Path)
						if len(d.Changes) > 0 {
							line += " (" + strings.Join(d.Changes, ", ") + ")"
						}
						fmt.Fprintln(e.stdout, line)
					}
				}
				if len(drift) > 0 {
					return errFailed{fmt.Sprintf("%d paths differ from what was unpacked", len(drift))}
				}
				return nil
			}
		},
	}
}
