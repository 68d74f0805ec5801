package apply

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/asynchash"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// PayloadError is the cause of a Rebuild that cannot reproduce the payload
// of one entry. It is wrapped in an error of kind not_found (Reason
// "missing" or "not kept") or digest_mismatch (Reason "changed"); errors.As
// finds it.
type PayloadError struct {
	Layer    digest.Digest // diffID of the layer being rebuilt
	Path     string        // the entry's name, cleaned, as in the tree
	Position int           // the entry's position in the layer's tar-split
	Reason   string        // "missing", "not kept", "changed"
	Detail   string        // what exactly, for people
}

func (e *PayloadError) Error() string {
	msg := fmt.Sprintf("file %q %s", e.Path, e.Reason)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// The reasons of a PayloadError.
const (
	ReasonMissing = "missing"  // the path no longer holds a regular file
	ReasonNotKept = "not kept" // a later layer replaced it and WithoutShadow dropped it
	ReasonChanged = "changed"  // its size or content differs from the recorded digest
)

// holdBack is how many bytes of a rebuilt stream are withheld until the
// stream's digest was checked: a writer cannot take bytes back, so a wrong
// rebuild must end before its last bytes (the end-of-archive blocks of a
// normal tar) with an error rather than with a clean EOF.
const holdBack = 1024

// holdWriter hashes everything written to it and passes it on to w, all
// but the last holdBack bytes, which finish releases.
type holdWriter struct {
	w       io.Writer
	h       hash.Hash
	pending []byte
	n       int64 // bytes written to holdWriter
	err     error
}

func (hw *holdWriter) Write(p []byte) (int, error) {
	if hw.err != nil {
		return 0, hw.err
	}
	hw.h.Write(p)
	hw.n += int64(len(p))
	total := len(p)
	if over := len(hw.pending) + len(p) - holdBack; over > 0 {
		// Pass on the oldest over bytes: from pending first, then from p.
		fromPending := min(over, len(hw.pending))
		if fromPending > 0 {
			if _, err := hw.w.Write(hw.pending[:fromPending]); err != nil {
				hw.err = err
				return 0, err
			}
			hw.pending = append(hw.pending[:0], hw.pending[fromPending:]...)
		}
		if fromP := over - fromPending; fromP > 0 {
			if _, err := hw.w.Write(p[:fromP]); err != nil {
				hw.err = err
				return 0, err
			}
			p = p[fromP:]
		}
	}
	hw.pending = append(hw.pending, p...)
	return total, nil
}

func (hw *holdWriter) finish() error {
	if hw.err != nil {
		return hw.err
	}
	_, err := hw.w.Write(hw.pending)
	hw.pending = hw.pending[:0]
	return err
}

// Rebuild writes to w the uncompressed tar of the layer diffID of the tree
// at rootfs, as Apply recorded it in stateDir, bit for bit: the tar-split
// metadata gives every header, padding and non-file byte, and each file's
// payload is read from where the apply wrote it (through the confined
// root, never through a final symbolic link, regular files only), or from
// the shadow store when a later layer (or a later entry of the same
// layer) replaced it. Nothing else is needed: the image's blobs may be
// gone.
//
// No byte reaches w unverified. Each payload is copied privately first
// (into memory up to 4 MiB, beyond that into an anonymous temporary file
// in the state directory, by reflink where the file system can), its
// digest compared with the recorded one, and only then written: the tree
// may change while it is read (a running container), and what was
// checked is what is written, never a second read of the live file. The
// stream is hashed as it is written, and its last 1024 bytes are withheld
// until the hash equals diffID. So a tree that changed since apply makes
// Rebuild fail, never end cleanly, and what w received is a prefix of the
// layer: a *PayloadError of kind digest_mismatch names the file that
// changed, of kind not_found a file gone or not kept; digest_mismatch for
// the stream as a whole. A diffID that is not one of the target's layers
// is not_found; a state that is not complete, or that describes another
// directory, is invalid_argument; one an unpack holds is busy.
func Rebuild(ctx context.Context, stateDir, rootfs string, diffID digest.Digest, w io.Writer) error {
	if err := diffID.Validate(); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "diffID %q", diffID)
	}
	st, unlock, err := openComplete(stateDir, rootfs)
	if err != nil {
		return err
	}
	defer unlock()
	found := false
	for _, l := range st.Layers {
		found = found || l.DiffID == diffID
	}
	if !found {
		return errdefs.New(errdefs.ErrNotFound, "layer %s is not a layer of the tree in %s", diffID, rootfs)
	}
	rb, err := newRebuilder(stateDir, rootfs, st, true)
	if err != nil {
		return err
	}
	defer rb.close()
	_, err = rb.layer(ctx, diffID, w)
	return err
}

// LayerCheck is the result of rebuilding one layer.
type LayerCheck struct {
	Index  int           // in the image, lowest first
	DiffID digest.Digest //
	Bytes  int64         // length of the rebuilt stream
	Err    error         // nil when the layer was rebuilt bit for bit
}

// RebuildAll rebuilds every layer of the tree, lowest first, each into the
// writer open returns for it (closed after the layer, whatever the
// outcome), and reports one LayerCheck per layer: a layer that fails does
// not stop the others. The error is for what prevents rebuilding at all
// (no complete state, a failing open). As with Rebuild, no writer ever
// receives an unverified byte; a writer whose layer failed got a prefix of
// it.
func RebuildAll(ctx context.Context, stateDir, rootfs string, open func(index int, diffID digest.Digest) (io.WriteCloser, error)) ([]LayerCheck, error) {
	st, unlock, err := openComplete(stateDir, rootfs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rb, err := newRebuilder(stateDir, rootfs, st, true)
	if err != nil {
		return nil, err
	}
	defer rb.close()
	var res []LayerCheck
	for i, l := range st.Layers {
		w, err := open(i, l.DiffID)
		if err != nil {
			return res, err
		}
		n, err := rb.layer(ctx, l.DiffID, w)
		if cerr := w.Close(); err == nil && cerr != nil {
			err = errdefs.Wrap(cerr, errdefs.ErrInternal, "layer %d", i+1)
		}
		res = append(res, LayerCheck{Index: i, DiffID: l.DiffID, Bytes: n, Err: err})
		if ctx.Err() != nil {
			return res, errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "rebuilding")
		}
	}
	return res, nil
}

// Check rebuilds every layer and discards the streams: RebuildAll for
// "does the tree still reproduce every layer". Layers are checked side by
// side, as many at once as there are CPUs: each one is independent of
// the others, and a check is bound by reading files and hashing them.
// Since nothing is written, payloads are hashed as they are read, without
// a private copy.
func Check(ctx context.Context, stateDir, rootfs string) ([]LayerCheck, error) {
	st, unlock, err := openComplete(stateDir, rootfs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	workers := min(runtime.GOMAXPROCS(0), len(st.Layers))
	rbs := make([]*rebuilder, workers)
	for i := range rbs {
		if rbs[i], err = newRebuilder(stateDir, rootfs, st, false); err != nil {
			for _, rb := range rbs[:i] {
				rb.close()
			}
			return nil, err
		}
	}
	res := make([]LayerCheck, len(st.Layers))
	next := make(chan int, len(st.Layers))
	for i := range st.Layers {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for _, rb := range rbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rb.close()
			for i := range next {
				if ctx.Err() != nil {
					return
				}
				d := st.Layers[i].DiffID
				n, err := rb.layer(ctx, d, io.Discard)
				res[i] = LayerCheck{Index: i, DiffID: d, Bytes: n, Err: err}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "rebuilding")
	}
	return res, nil
}

// memCopyMax is the largest payload rebuild copies into memory; larger
// ones go through a temporary file.
const memCopyMax = 4 << 20

type rebuilder struct {
	stateDir string
	st       *State
	root     *fsroot.Root
	buf      []byte
	zr       *zstd.Decoder
	fh       *fileHash
	maxDepth int
	// private: copy each payload before writing it (not for Check,
	// which writes nothing).
	private bool
	mem     []byte   // the in-memory copy, up to memCopyMax
	tmp     *os.File // the temporary file, made when first needed
	noClone bool     // the file system refused a reflink once
	// legacy reads a state of format 1 for Upgrade: payloads by entry
	// name, checked by CRC only (the diffID covers them all).
	legacy bool
}

func newRebuilder(stateDir, rootfs string, st *State, private bool) (*rebuilder, error) {
	if st.Status != StatusComplete {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "the apply into %s did not complete (status %q): its layers cannot be rebuilt", rootfs, st.Status)
	}
	if st.Version == stateVersion && st.FileDigest != digestName {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "the state in %s records content digests of kind %q, this program checks %q", stateDir, st.FileDigest, digestName)
	}
	root, err := fsroot.Open(rootfs)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target directory")
	}
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		root.Close()
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "zstd")
	}
	maxDepth := st.MaxDepth
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	return &rebuilder{stateDir: stateDir, st: st, root: root, buf: make([]byte, bufSize), zr: zr, fh: newFileHash(),
		maxDepth: maxDepth, private: private, legacy: st.Version != stateVersion}, nil
}

func (rb *rebuilder) close() {
	rb.root.Close()
	rb.zr.Close()
	if rb.tmp != nil {
		rb.tmp.Close()
	}
}

// shadowKind is how the shadow store keeps a payload.
type shadowKind uint8

const (
	shadowRaw     shadowKind = iota + 1 // <pos>: the file itself, moved aside
	shadowPacked                        // in pack.zst (CompactShadow)
	shadowDropped                       // <pos>.dropped: given up (WithoutShadow)
)

// shadowed lists the shadow store of a layer: position -> how its payload
// is kept, the layer's pack, if it has one, open at its first payload,
// and the store's directory, whose raw copies payload opens (the caller
// closes both). A payload found both as a file and in the pack (a
// compaction that was interrupted) is read from the file. The directory
// is opened through the checked state (statedir.go), once per layer.
func (rb *rebuilder) shadowed(key string) (_ map[int]shadowKind, _ *packReader, _ *os.File, err error) {
	dfd, err := openStateDirAt(rb.stateDir, shadowDir+"/"+key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, nil
	}
	if err != nil {
		if hasKind(err) {
			return nil, nil, nil, err
		}
		return nil, nil, nil, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
	}
	d := os.NewFile(uintptr(dfd), filepath.Join(rb.stateDir, shadowDir, key))
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, nil, nil, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
	}
	m := make(map[int]shadowKind, len(names))
	var pack *packReader
	for _, n := range names {
		if n == packName {
			f, err := openAtOwner(dfd, n)
			if err == nil {
				pack, err = openPack(f)
				if err != nil {
					f.Close()
				}
			}
			if err != nil {
				return nil, nil, nil, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
			}
			for _, pos := range pack.pos {
				if _, ok := m[pos]; !ok {
					m[pos] = shadowPacked
				}
			}
			continue
		}
		kind := shadowRaw
		if b, ok := strings.CutSuffix(n, droppedExt); ok {
			n, kind = b, shadowDropped
		}
		pos, err := strconv.Atoi(n)
		if err != nil {
			continue // a temporary file
		}
		if old, ok := m[pos]; !ok || kind < old || old == shadowPacked {
			m[pos] = kind
		}
	}
	return m, pack, d, nil
}

// layer rebuilds one layer into w and returns the bytes written.
func (rb *rebuilder) layer(ctx context.Context, diffID digest.Digest, w io.Writer) (int64, error) {
	key := layerKey(diffID)
	f, err := openStateFile(rb.stateDir, tarsplitName(diffID))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errdefs.Wrap(err, errdefs.ErrNotFound, "no tar-split metadata for layer %s", diffID)
		}
		if hasKind(err) {
			return 0, err
		}
		return 0, errdefs.Wrap(err, errdefs.ErrInternal, "tar-split metadata of layer %s", diffID)
	}
	defer f.Close()
	shadow, pack, sdir, err := rb.shadowed(key)
	if err != nil {
		return 0, err
	}
	if pack != nil {
		defer pack.close()
	}
	if sdir != nil {
		defer sdir.Close()
	}
	if err := rb.zr.Reset(bufio.NewReaderSize(f, 64<<10)); err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrInternal, "tar-split metadata of layer %s", diffID)
	}
	dec := newEntryReader(rb.zr)
	h := asynchash.New(diffID.Algorithm().Hash())
	defer h.Close()
	hw := &holdWriter{w: w, h: h}
	var e tsEntry // reused: nothing keeps its payload
	for i := 0; ; i++ {
		if i%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return hw.n, errdefs.Wrap(err, errdefs.ErrCanceled, "rebuilding layer %s", diffID)
			}
		}
		if err := dec.next(&e); err == io.EOF {
			break
		} else if err != nil {
			return hw.n, errdefs.Wrap(err, errdefs.ErrInternal, "tar-split metadata of layer %s is corrupt", diffID)
		}
		switch e.Type {
		case storage.SegmentType:
			if _, err := hw.Write(e.Payload); err != nil {
				return hw.n, writeErr(err, diffID)
			}
		case storage.FileType:
			if e.Size == 0 {
				continue
			}
			if err := rb.payload(ctx, diffID, &e, shadow, pack, sdir, hw); err != nil {
				return hw.n, err
			}
		default:
			return hw.n, errdefs.New(errdefs.ErrInternal, "tar-split metadata of layer %s: entry type %d", diffID, e.Type)
		}
	}
	if got := digest.NewDigest(diffID.Algorithm(), hw.h); got != diffID {
		return hw.n, errdefs.New(errdefs.ErrDigestMismatch, "rebuilt layer %s hashes to %s", diffID, got)
	}
	if err := hw.finish(); err != nil {
		return hw.n, writeErr(err, diffID)
	}
	return hw.n, nil
}

func writeErr(err error, diffID digest.Digest) error {
	if hasKind(err) {
		return err
	}
	return errdefs.Wrap(err, errdefs.ErrInternal, "writing the rebuilt layer %s", diffID)
}

// payload writes the payload of file entry e, verified; shadow, pack and
// sdir are the layer's shadow store (shadowed).
func (rb *rebuilder) payload(ctx context.Context, diffID digest.Digest, e *tsEntry, shadow map[int]shadowKind, pack *packReader, sdir *os.File, hw *holdWriter) error {
	name, err := cleanName(e.GetName())
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "tar-split metadata of layer %s", diffID)
	}
	at := name
	if e.at != "" {
		if at, err = cleanName(e.at); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "tar-split metadata of layer %s", diffID)
		}
	}
	perr := func(kind errdefs.Kind, reason, detail string) error {
		return errdefs.Wrap(&PayloadError{Layer: diffID, Path: at, Position: e.Position, Reason: reason, Detail: detail}, kind, "rebuilding layer %s", diffID)
	}
	if !rb.legacy && !e.hasSum {
		return errdefs.New(errdefs.ErrInternal, "tar-split metadata of layer %s: the payload of %q has no digest", diffID, name)
	}
	var f *os.File
	kind := shadow[e.Position]
	switch kind {
	case shadowDropped:
		return perr(errdefs.ErrNotFound, ReasonNotKept, "a later layer replaced it and its shadow copy was not kept")
	case shadowPacked:
		src, err := pack.payload(e.Position)
		if err != nil {
			return perr(errdefs.ErrDigestMismatch, ReasonChanged, err.Error())
		}
		return rb.packedPayload(ctx, diffID, src, e, hw, perr)
	case shadowRaw:
		// The directory was checked (shadowed); the copy keeps the
		// image's owner and mode, and its digest is checked below.
		f, err = openAtOwner(int(sdir.Fd()), strconv.Itoa(e.Position))
		if err != nil {
			return perr(errdefs.ErrNotFound, ReasonMissing, "shadow copy: "+err.Error())
		}
	default:
		if depth(at) > rb.maxDepth {
			return perr(errdefs.ErrTooLarge, ReasonMissing, fmt.Sprintf("deeper than the limit of %d levels", rb.maxDepth))
		}
		f, err = openTreeFile(rb.root, at)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, fsroot.ErrNotRegular) || errors.Is(err, unix.ELOOP) {
				return perr(errdefs.ErrNotFound, ReasonMissing, err.Error())
			}
			return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: reading %q", diffID, at)
		}
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: %q", diffID, at)
	}
	if st.Size != e.Size {
		return perr(errdefs.ErrDigestMismatch, ReasonChanged, fmt.Sprintf("%d bytes, recorded %d", st.Size, e.Size))
	}
	readErr := func(err error) error {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return perr(errdefs.ErrDigestMismatch, ReasonChanged, fmt.Sprintf("shrank while read, recorded %d bytes", e.Size))
		}
		return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: reading %q", diffID, at)
	}
	changed := func() error {
		return perr(errdefs.ErrDigestMismatch, ReasonChanged, "its content digest differs from the recorded one")
	}
	switch {
	case rb.legacy:
		return rb.legacyPayload(f, e, hw, perr, readErr)
	case !rb.private:
		// Check: nothing is written anywhere, so the live file is hashed
		// as it is read and passed on.
		rb.fh.Reset()
		if _, err := io.CopyBuffer(io.MultiWriter(hw, rb.fh), io.LimitReader(f, e.Size), rb.buf); err != nil {
			if hw.err != nil {
				return writeErr(hw.err, diffID)
			}
			return readErr(err)
		}
		if rb.fh.size != e.Size {
			return readErr(io.EOF)
		}
		if rb.fh.Sum() != e.sum {
			return changed()
		}
		return nil
	case e.Size <= memCopyMax:
		if cap(rb.mem) < int(e.Size) {
			rb.mem = make([]byte, e.Size, max(e.Size, min(2*int64(cap(rb.mem)), memCopyMax)))
		}
		b := rb.mem[:e.Size]
		if _, err := io.ReadFull(f, b); err != nil {
			return readErr(err)
		}
		rb.fh.Reset()
		rb.fh.Write(b)
		if rb.fh.Sum() != e.sum {
			return changed()
		}
		if _, err := hw.Write(b); err != nil {
			return writeErr(err, diffID)
		}
		return nil
	default:
		tmp, err := rb.copyPrivately(ctx, f, e.Size)
		if err != nil {
			if errors.Is(err, errShrank) {
				return readErr(io.EOF)
			}
			return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: a private copy of %q", diffID, at)
		}
		if rb.fh.Sum() != e.sum {
			return changed()
		}
		if _, err := io.CopyBuffer(hw, io.NewSectionReader(tmp, 0, e.Size), rb.buf); err != nil {
			if hw.err != nil {
				return writeErr(hw.err, diffID)
			}
			return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: the private copy of %q", diffID, at)
		}
		return nil
	}
}

var errShrank = errors.New("shrank while copied")

// copyPrivately copies the first size bytes of f into the rebuilder's
// temporary file, which nothing else can reach, and leaves their digest
// in rb.fh. A reflink (FICLONE) takes a copy-on-write snapshot of f where
// the file system has them; otherwise the bytes are copied, hashed as
// they are read. Either way the digest is of the copy.
func (rb *rebuilder) copyPrivately(ctx context.Context, f *os.File, size int64) (*os.File, error) {
	if rb.tmp == nil {
		t, err := privateTemp(rb.stateDir)
		if err != nil {
			return nil, err
		}
		rb.tmp = t
	}
	tmp := rb.tmp
	rb.fh.Reset()
	if !rb.noClone {
		if err := unix.IoctlFileClone(int(tmp.Fd()), int(f.Fd())); err == nil {
			var st unix.Stat_t
			if err := unix.Fstat(int(tmp.Fd()), &st); err != nil {
				return nil, err
			}
			if st.Size < size {
				return nil, errShrank
			}
			if _, err := io.CopyBuffer(rb.fh, io.NewSectionReader(tmp, 0, size), rb.buf); err != nil {
				return nil, err
			}
			return tmp, nil
		}
		rb.noClone = true
	}
	if err := tmp.Truncate(0); err != nil {
		return nil, err
	}
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := f.Read(rb.buf[:min(int64(len(rb.buf)), size-off)])
		if n > 0 {
			rb.fh.Write(rb.buf[:n])
			if _, werr := tmp.WriteAt(rb.buf[:n], off); werr != nil {
				return nil, werr
			}
			off += int64(n)
		}
		if err == io.EOF {
			if off < size {
				return nil, errShrank
			}
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return tmp, nil
}

// privateTemp makes an anonymous file in dir (the state directory, which
// is outside any container's reach), or in the system's temporary
// directory when dir refuses.
func privateTemp(dir string) (*os.File, error) {
	f, err := scratchFile(dir, "rebuild-copy")
	if err != nil {
		f, err = scratchFile(os.TempDir(), "rebuild-copy")
	}
	return f, err
}

// legacyPayload streams a payload of a format-1 state (for Upgrade, whose
// fresh apply checks the diffID of every layer): its CRC-64 is checked
// once it was written.
func (rb *rebuilder) legacyPayload(f *os.File, e *tsEntry, hw *holdWriter, perr func(errdefs.Kind, string, string) error, readErr func(error) error) error {
	crc := newCRC()
	n, err := io.CopyBuffer(io.MultiWriter(hw, crc), io.LimitReader(f, e.Size), rb.buf)
	if hw.err != nil {
		return hw.err
	}
	if err != nil {
		return readErr(err)
	}
	if n != e.Size {
		return readErr(io.EOF)
	}
	if sum := crc.Sum(nil); !bytes.Equal(sum, e.Payload) {
		return perr(errdefs.ErrDigestMismatch, ReasonChanged, fmt.Sprintf("CRC-64 %x, recorded %x", sum, e.Payload))
	}
	return nil
}
