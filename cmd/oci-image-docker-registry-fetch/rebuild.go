package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

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
	fs.StringVar(&s.store, "store", "", "the blob store `DIR`: with --compressed, put the rebuilt blobs back into it (otherwise accepted for symmetry: rebuilding needs only the tree and its metadata)")
	fs.StringVar(&s.state, "state", "", "the state `DIR` unpack recorded (default: .ROOTFS.ocifetch beside ROOTFS)")
	jsonFlag(fs, &s.json)
}

func (s *stateFlags) dir(rootfs string) string {
	if s.state != "" {
		return s.state
	}
	return apply.DefaultStateDir(rootfs)
}

// find returns the state directory of rootfs, or, when there is none, a
// not_found error that says what to do: apply's own named only the
// directory it had looked for ("no apply state in /tmp/.x.ocifetch: open
// ...: no such file or directory"), which left a user who mistyped
// ROOTFS, or never unpacked into it, guessing.
func (s *stateFlags) find(rootfs string) (string, error) {
	state := s.dir(rootfs)
	if _, err := os.Lstat(state); !errors.Is(err, os.ErrNotExist) {
		return state, nil
	}
	if _, err := os.Lstat(rootfs); errors.Is(err, os.ErrNotExist) {
		return "", errdefs.New(errdefs.ErrNotFound, "%s does not exist; name the directory an image was unpacked into", rootfs)
	}
	if s.state != "" {
		return "", errdefs.New(errdefs.ErrNotFound, "state directory %s does not exist; give --state the directory unpack recorded %s in", state, rootfs)
	}
	return "", errdefs.New(errdefs.ErrNotFound, "%s holds no unpack: there is no state directory %s beside it; unpack an image into it first, or give its state directory with --state DIR", rootfs, state)
}

// errFailed ends a command with the verification exit status after its
// own output said what failed.
type errFailed struct{ msg string }

func (e errFailed) Error() string { return e.msg }

func rebuildCommand() *command {
	return &command{
		name:    "rebuild",
		summary: "Rebuild a layer's tar (or with --compressed its blob) bit-for-bit from an unpacked root filesystem and its metadata, or check every layer.",
		usage:   "rebuild [--store DIR] [--state DIR] [--layer N|DIFFID|DIGEST] [--all] [--check] [--compressed] [-o FILE|DIR] [--json] ROOTFS",
		example: prog + " rebuild --layer 1 -o layer1.tar ./rootfs && " + prog + " rebuild --all --check ./rootfs && " + prog + " rebuild --compressed --all --store ./store ./rootfs",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var sf stateFlags
			var layer, out string
			var all, check, compressed bool
			sf.register(fs)
			fs.StringVar(&layer, "layer", "", "the layer to rebuild: its position `N` (1 is the lowest), its diffID or its blob digest")
			fs.BoolVar(&all, "all", false, "rebuild every layer")
			fs.BoolVar(&check, "check", false, "with --all: check each rebuilt layer against its diffID (with --compressed: its blob against the manifest digest), one line per layer, and write nothing")
			fs.BoolVar(&compressed, "compressed", false, "rebuild the blob as the manifest names it (compressed again by the recipe recorded at unpack), checked against its digest before anything is written")
			fs.StringVarP(&out, "output", "o", "", "write the tar (or blob) to `FILE` (default: standard output); with --all, into DIR as <diffID>.tar (with --compressed: <digest>.tar, .tar.gz or .tar.zst)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("rebuild takes one root filesystem directory, got %d arguments", len(args))
				}
				rootfs := args[0]
				switch {
				case all && layer != "":
					return usagef("--layer and --all exclude each other")
				case all && !check && out == "" && !(compressed && sf.store != ""):
					if compressed {
						return usagef("--compressed --all needs --check, -o DIR or --store DIR to put the blobs")
					}
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
				state, err := sf.find(rootfs)
				if err != nil {
					return err
				}
				if compressed {
					return rebuildBlobs(ctx, e, blobTarget{state: state, rootfs: rootfs, layer: layer, out: out, store: sf.store, check: check, all: all, json: sf.json})
				}
				if all {
					return rebuildAll(ctx, e, state, rootfs, out, check, sf.json)
				}
				st, err := apply.Status(state)
				if err != nil {
					return err
				}
				i, err := pickLayer(st, layer)
				if err != nil {
					return err
				}
				d := st.Layers[i].DiffID
				n, err := rebuildOne(ctx, e, state, rootfs, d, out)
				if err != nil || !sf.json {
					return err
				}
				return writeJSON(e, rebuildJSON{Rootfs: absPath(rootfs), Layer: i + 1, DiffID: d.String(), Output: absPath(out), Bytes: n})
			}
		},
	}
}

// pickLayer maps "N" (1-based), a diffID or a blob digest to the index
// of a layer.
func pickLayer(st *apply.State, s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > len(st.Layers) {
			return 0, errdefs.New(errdefs.ErrNotFound, "there is no layer %d: the image has %d layers", n, len(st.Layers))
		}
		return n - 1, nil
	}
	d, err := digest.Parse(s)
	if err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "--layer %q is neither a position nor a digest", s)
	}
	for i, l := range st.Layers {
		if l.DiffID == d || l.Digest == d {
			return i, nil
		}
	}
	return 0, errdefs.New(errdefs.ErrNotFound, "layer %s is not a layer of this tree (neither a diffID nor a blob digest of its %d layers)", d, len(st.Layers))
}

// rebuildJSON is "rebuild --layer N -o FILE --json".
type rebuildJSON struct {
	Rootfs string `json:"rootfs"`
	Layer  int    `json:"layer"`
	DiffID string `json:"diffID"`
	Output string `json:"output"`
	Bytes  int64  `json:"bytes"`
}

// rebuildOne writes one layer to standard output or to out (see
// openLayerOutput: a file is published whole on success, so a failed rebuild
// leaves no file; a FIFO, device or socket is written through), and
// returns its length.
func rebuildOne(ctx context.Context, e *env, state, rootfs string, d digest.Digest, out string) (int64, error) {
	if out == "" || out == "-" {
		cw := &countWriter{w: e.stdout}
		err := apply.Rebuild(ctx, state, rootfs, d, cw)
		return cw.n, err
	}
	w, err := openLayerOutput(ctx, out)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	if err := apply.Rebuild(ctx, state, rootfs, d, cw); err != nil {
		w.Abort()
		return 0, err
	}
	if err := w.Commit(); err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrInternal, "-o %s", out)
	}
	return cw.n, nil
}

// reproJSON says of one layer of a tree whether the tree makes its blob
// again ("verify --json"'s layers).
type reproJSON struct {
	Layer     int    `json:"layer"`
	DiffID    string `json:"diffID"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Reproducible is "tar" (an uncompressed layer: the blob is the tar),
	// "confirmed" (its recipe made the whole blob once, digest checked),
	// "candidate" (recipes reproduced its start; a rebuild checks the
	// digest) or "" (not reproducible: its blob must be kept).
	Reproducible string `json:"reproducible"`
	Recipe       string `json:"recipe,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// says is the text line of verify for the layer.
func (r reproJSON) says(drifted bool) string {
	var s string
	switch r.Reproducible {
	case "tar":
		s = "blob reproducible (an uncompressed layer: the tar itself)"
	case "confirmed":
		s = "blob reproducible, recipe confirmed: " + r.Recipe
	case "candidate":
		s = "blob reproducible, best effort (recipe not confirmed on the whole blob): " + r.Recipe
	default:
		reason := r.Reason
		if reason == "" {
			reason = "no recipe recorded"
		}
		return "blob not reproducible: " + textQuote(reason)
	}
	if drifted {
		s += "; not while the tree differs from what was unpacked"
	}
	return s
}

// reproducibleLayers reads what the state says of each layer's blob.
func reproducibleLayers(state string) []reproJSON {
	out := []reproJSON{}
	st, err := apply.Status(state)
	if err != nil {
		return out
	}
	for i, l := range st.Layers {
		r := reproJSON{Layer: i + 1, DiffID: l.DiffID.String(), Digest: l.Digest.String(), MediaType: l.MediaType, Reproducible: l.Reproducible()}
		if l.Recipe != nil {
			if len(l.Recipe.Candidates) > 0 {
				r.Recipe = l.Recipe.Candidates[0].String()
			}
			r.Reason = l.Recipe.Reason
		}
		out = append(out, r)
	}
	return out
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
		if err := writeJSON(e, withRaw(map[string]any{"layers": rows, "ok": failed == 0}, "rootfs", absPath(rootfs))); err != nil {
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
		usage:   "verify [--store DIR] [--state DIR] [--ignore-xattr NAME]... [--dir-mtimes] [--upgrade] [--layers] [--json] ROOTFS",
		example: prog + " verify ./rootfs",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var sf stateFlags
			var ignore multiFlag
			var dirMtimes, upgrade, showLayers bool
			sf.register(fs)
			fs.BoolVar(&showLayers, "layers", false, "also print, per layer, whether the tree makes its blob again (rebuild --compressed), after the drift; --json always has it")
			fs.Var(&ignore, "ignore-xattr", "do not compare the extended attribute `NAME` (repeatable; security.selinux is never compared)")
			fs.BoolVar(&dirMtimes, "dir-mtimes", false, "compare the modification times of directories too")
			fs.BoolVar(&upgrade, "upgrade", false, "first bring a tree unpacked by an older version (state format 1) to this version's state, from the layers the tree rebuilds")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("verify takes one root filesystem directory, got %d arguments", len(args))
				}
				state, err := sf.find(args[0])
				if err != nil {
					return err
				}
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
				layers := reproducibleLayers(state)
				if sf.json {
					if drift == nil {
						drift = []apply.Drift{}
					}
					// apply.Drift adds pathRaw to a path that is not UTF-8.
					if err := writeJSON(e, withRaw(map[string]any{"clean": len(drift) == 0, "drift": drift, "layers": layers}, "rootfs", absPath(args[0]))); err != nil {
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
					if showLayers {
						for _, l := range layers {
							fmt.Fprintf(e.stdout, "layer %d %s %s\n", l.Layer, l.Digest, l.says(len(drift) > 0))
						}
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

// withRaw sets m[key] to the path p and, when p is not valid UTF-8
// (which a JSON string cannot hold: encoding/json would write U+FFFD for
// each bad byte), m[key+"Raw"] to its exact bytes, base64: --json stays
// exact for any name.
func withRaw(m map[string]any, key, p string) map[string]any {
	m[key] = p
	if !utf8.ValidString(p) {
		m[key+"Raw"] = []byte(p)
	}
	return m
}
