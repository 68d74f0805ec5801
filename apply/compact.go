package apply

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
)

// packName is the compressed shadow store of a layer:
// shadow/<key>/pack.zst holds the payloads that were moved aside, in
// the order of their positions, as one zstd stream (see writePack).
const packName = "pack.zst"

// packMagic starts a pack's stream, then its version.
const packMagic = "ocifetch shadow pack 1\n"

// packLevel is the zstd level of packs: klauspost's fastest (about zstd
// level 1). One stream per layer at that level takes the Debian image of
// docs/performance.md's disk table from 48.3 MB of shadowed files to
// 16.8 MB (its default level, 14.3 MB, costs about twice the CPU on the
// unpack's hot path, where --keep-blobs=false packs); each file
// compressed on its own left 22.8 MB: small files waste most of a block,
// and the files of a layer have much in common (the message IDs every
// gettext catalog repeats).
const packLevel = zstd.SpeedFastest

// CompactReport says what CompactShadow did.
type CompactReport struct {
	Files  int   // payloads packed
	Before int64 // the disk space they took (st_blocks), in bytes
	After  int64 // and the packs take now
}

// CompactShadow compresses the payloads the shadow store of stateDir
// keeps: per layer, one zstd stream (pack.zst) holding every payload in
// position order, so that the state takes less room beside its tree. A
// shadowed payload is read only by Rebuild and Check, which read a
// layer's payloads in position order anyway: they decompress the pack
// as they go and check each payload's digest as for any other. It takes
// the state's lock exclusively (busy while an unpack, verify or rebuild
// holds it); Apply does the same itself with WithCompactShadow, and
// Confirm (gc --unpacked) for the trees it relies on.
//
// A pack is written under a temporary name, synced and renamed, and only
// then are the files it holds removed: an interrupted compaction leaves
// both, the files are read, and the next compaction finishes the job.
func CompactShadow(ctx context.Context, stateDir string) (*CompactReport, error) {
	l, _, err := lockCompleteState(stateDir)
	if err != nil {
		return nil, err
	}
	defer l.release()
	return compactShadow(ctx, stateDir)
}

// lockCompleteState takes the lock of stateDir exclusively and reads its
// state, which must be complete: what changes a complete state
// (Confirm's recipes, CompactShadow's packs) needs. The caller releases
// the lock.
func lockCompleteState(stateDir string) (*stateLock, *State, error) {
	l, _, err := lockState(stateDir, true, false)
	if err != nil {
		if hasKind(err) {
			return nil, nil, err
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, errdefs.Wrap(err, errdefs.ErrNotFound, "no apply state in %s", stateDir)
		}
		return nil, nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "locking the state directory %s", stateDir)
	}
	st, err := Status(stateDir)
	if err == nil && st.Status != StatusComplete {
		err = errdefs.New(errdefs.ErrInvalidArgument, "the apply recorded in %s did not complete (status %q)", stateDir, st.Status)
	}
	if err != nil {
		l.release()
		return nil, nil, err
	}
	return l, st, nil
}

// compactShadow is CompactShadow for a caller that holds the lock.
func compactShadow(ctx context.Context, stateDir string) (*CompactReport, error) {
	root := filepath.Join(stateDir, shadowDir)
	keys, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return &CompactReport{}, nil
	}
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
	}
	rep := &CompactReport{}
	for _, k := range keys {
		if !k.IsDir() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, errdefs.Wrap(err, errdefs.ErrCanceled, "compacting the shadow store")
		}
		if err := compactLayer(ctx, filepath.Join(root, k.Name()), rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// packEntry is one payload of a pack, or of a file about to join one.
type packEntry struct {
	pos  int
	size int64
	file string // the shadowed file holding it; "" when in the old pack
}

// compactLayer packs the shadowed files of one layer's directory,
// merged with its pack if it has one.
func compactLayer(ctx context.Context, dir string, rep *CompactReport) error {
	fail := func(err error) error {
		if hasKind(err) {
			return err
		}
		return errdefs.Wrap(err, errdefs.ErrInternal, "shadow store: packing %s", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fail(err)
	}
	var old *packReader
	if f, err := os.Open(filepath.Join(dir, packName)); err == nil {
		old, err = openPack(f)
		if err != nil {
			f.Close()
			return fail(err)
		}
		defer old.close()
	}
	inPack := map[int]bool{}
	var list []packEntry
	if old != nil {
		for i, p := range old.pos {
			inPack[p] = true
			list = append(list, packEntry{pos: p, size: old.size[i]})
		}
	}
	var files []string
	var before int64
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, atomicfile.TempPrefix) {
			os.Remove(filepath.Join(dir, n)) // left by an interrupted compaction
			continue
		}
		pos, err := strconv.Atoi(n)
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		if inPack[pos] {
			// Packed before, the file not yet removed.
			os.Remove(filepath.Join(dir, n))
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, n), &st); err != nil {
			return fail(err)
		}
		files = append(files, n)
		before += st.Blocks * 512
		list = append(list, packEntry{pos: pos, size: st.Size, file: n})
	}
	if len(files) == 0 || len(list) > maxPackEntries {
		return nil // nothing to pack, or more than a pack may hold: left as files
	}
	sort.Slice(list, func(i, j int) bool { return list[i].pos < list[j].pos })
	for i := 1; i < len(list); i++ {
		if list[i].pos-list[i-1].pos > maxPackStep {
			return nil // a pack could not be read back: left as files
		}
	}
	out, err := atomicfile.Create(filepath.Join(dir, packName), 0o600)
	if err != nil {
		return fail(err)
	}
	defer out.Abort()
	if err := writePack(ctx, out, dir, list, old); err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(out.Fd()), &st); err != nil {
		return fail(err)
	}
	// Commit fsyncs the pack, renames it over the old one and fsyncs dir:
	// the shadowed files are removed only once the pack is durable.
	if err := out.Commit(); err != nil {
		return fail(err)
	}
	for _, n := range files {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
	}
	rep.Files += len(files)
	rep.Before += before
	rep.After += st.Blocks * 512
	return atomicfile.SyncDir(dir)
}

// writePack writes the pack of list (sorted by position) to w: the
// magic, the number of payloads and each one's position (as the
// difference from the one before) and size, all as uvarints, then the
// payloads one after the other; one zstd stream, in frames compressed
// side by side (see frameWriter). Payloads come from
// their files, or from old, the pack being replaced.
func writePack(ctx context.Context, w io.Writer, dir string, list []packEntry, old *packReader) error {
	procs := min(runtime.GOMAXPROCS(0), maxPackProcs)
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(packLevel), zstd.WithEncoderConcurrency(procs))
	if err != nil {
		return err
	}
	defer zenc.Close()
	enc := newFrameWriter(w, zenc, procs)
	defer enc.abort()
	hdr := append([]byte(packMagic), nil...)
	hdr = binary.AppendUvarint(hdr, uint64(len(list)))
	prev := 0
	for _, e := range list {
		hdr = binary.AppendUvarint(hdr, uint64(e.pos-prev))
		hdr = binary.AppendUvarint(hdr, uint64(e.size))
		prev = e.pos
	}
	if _, err := enc.Write(hdr); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	for _, e := range list {
		if err := ctx.Err(); err != nil {
			return errdefs.Wrap(err, errdefs.ErrCanceled, "compacting the shadow store")
		}
		var n int64
		if e.file == "" {
			r, err := old.payload(e.pos)
			if err != nil {
				return err
			}
			if n, err = io.CopyBuffer(enc, io.LimitReader(r, e.size), buf); err != nil {
				return err
			}
		} else if n, err = packFile(enc, filepath.Join(dir, e.file), e.size, buf); err != nil {
			return err
		}
		if n != e.size {
			return fmt.Errorf("payload %d: %d bytes, want %d", e.pos, n, e.size)
		}
	}
	return enc.Close()
}

// packFile copies the first size bytes of the shadowed file name to w.
// Each file is closed once read: a layer may shadow more files than a
// process may hold open.
func packFile(w io.Writer, name string, size int64, buf []byte) (int64, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.CopyBuffer(w, io.LimitReader(f, size), buf)
}

// maxPackProcs bounds the frames of a pack compressed at once, and so the
// memory packing takes (about 3 MiB a frame) on a machine of many cores.
const maxPackProcs = 4

// packReader reads a layer's pack in position order.
type packReader struct {
	f    *os.File
	dec  *zstd.Decoder
	pos  []int   // the positions it holds, ascending
	size []int64 // and their sizes
	next int     // index of the next payload in the stream
	cur  io.Reader
}

// maxPackEntries bounds a pack's header, which is read whole: 1<<26
// entries let a forged 14 KB pack make rebuild hold 4.1 GB (the
// positions, their sizes and the map of them) for two minutes. 1<<22
// is above the CLI's limit of entries per layer (4,000,000), and
// compaction leaves a layer with more shadowed payloads unpacked, so no
// pack this program writes is refused.
const maxPackEntries = 1 << 22

// maxPackStep bounds the difference between two positions of a pack.
const maxPackStep = 1 << 26

func openPack(f *os.File) (*packReader, error) {
	dec, err := zstd.NewReader(bufio.NewReaderSize(f, 64<<10), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
	if err != nil {
		return nil, err
	}
	p := &packReader{f: f, dec: dec}
	bad := func(what string) (*packReader, error) {
		dec.Close()
		return nil, fmt.Errorf("shadow pack %s: %s", f.Name(), what)
	}
	br := bufio.NewReaderSize(dec, 4096)
	magic := make([]byte, len(packMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != packMagic {
		return bad("not a pack of this version")
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > maxPackEntries {
		return bad("bad header")
	}
	pos := 0
	for i := uint64(0); i < n; i++ {
		d, err1 := binary.ReadUvarint(br)
		sz, err2 := binary.ReadUvarint(br)
		if err1 != nil || err2 != nil || sz > 1<<62 || (i > 0 && d == 0) || d > maxPackStep {
			return bad("bad header")
		}
		pos += int(d)
		p.pos = append(p.pos, pos)
		p.size = append(p.size, int64(sz))
	}
	p.cur = br
	return p, nil
}

// payload returns a reader of the payload at position pos, skipping the
// payloads before it; payloads must be asked for in position order.
func (p *packReader) payload(pos int) (io.Reader, error) {
	for p.next < len(p.pos) && p.pos[p.next] < pos {
		if _, err := io.CopyN(io.Discard, p.cur, p.size[p.next]); err != nil {
			return nil, fmt.Errorf("shadow pack %s: %w", p.f.Name(), err)
		}
		p.next++
	}
	if p.next == len(p.pos) || p.pos[p.next] != pos {
		return nil, fmt.Errorf("shadow pack %s: no payload %d after the one before (asked out of order)", p.f.Name(), pos)
	}
	r := io.LimitReader(p.cur, p.size[p.next])
	p.next++
	return r, nil
}

func (p *packReader) close() {
	p.dec.Close()
	p.f.Close()
}

// packedPayload writes the payload of e that the layer's pack holds
// (src, exactly its recorded size from the pack), verified as every
// payload is: decompressed into a private copy (for Check, hashed as it
// streams), its size and content digest compared with the recorded
// ones, and only then written.
func (rb *rebuilder) packedPayload(ctx context.Context, diffID digest.Digest, src io.Reader, e *tsEntry, hw *holdWriter, perr func(errdefs.Kind, string, string) error) error {
	changed := func(detail string) error {
		return perr(errdefs.ErrDigestMismatch, ReasonChanged, "shadow pack: "+detail)
	}
	r := &readerFrom{r: src}
	// ended checks that the pack holds no more than the payload.
	ended := func() error {
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 {
			return changed(fmt.Sprintf("longer than the recorded %d bytes", e.Size))
		}
		return nil
	}
	short := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return changed(fmt.Sprintf("shorter than the recorded %d bytes", e.Size))
		}
		return changed(err.Error())
	}
	rb.fh.Reset()
	switch {
	case !rb.private:
		n, err := io.CopyBuffer(io.MultiWriter(hw, rb.fh), io.LimitReader(r, e.Size), rb.buf)
		if hw.err != nil {
			return writeErr(hw.err, diffID)
		}
		if err != nil {
			return short(err)
		}
		if n != e.Size {
			return short(io.EOF)
		}
		if err := ended(); err != nil {
			return err
		}
	case e.Size <= memCopyMax:
		if cap(rb.mem) < int(e.Size) {
			rb.mem = make([]byte, e.Size, max(e.Size, min(2*int64(cap(rb.mem)), memCopyMax)))
		}
		b := rb.mem[:e.Size]
		if _, err := io.ReadFull(r, b); err != nil {
			return short(err)
		}
		if err := ended(); err != nil {
			return err
		}
		rb.fh.Write(b)
		if rb.fh.Sum() != e.sum {
			return changed("its content digest differs from the recorded one")
		}
		if _, err := hw.Write(b); err != nil {
			return writeErr(err, diffID)
		}
		return nil
	default:
		if rb.tmp == nil {
			t, err := privateTemp(rb.stateDir)
			if err != nil {
				return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: a private copy", diffID)
			}
			rb.tmp = t
		}
		if err := rb.tmp.Truncate(0); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: a private copy", diffID)
		}
		var off int64
		for off < e.Size {
			if err := ctx.Err(); err != nil {
				return errdefs.Wrap(err, errdefs.ErrCanceled, "rebuilding layer %s", diffID)
			}
			n, err := r.Read(rb.buf[:min(int64(len(rb.buf)), e.Size-off)])
			if n > 0 {
				rb.fh.Write(rb.buf[:n])
				if _, werr := rb.tmp.WriteAt(rb.buf[:n], off); werr != nil {
					return errdefs.Wrap(werr, errdefs.ErrInternal, "rebuilding layer %s: a private copy", diffID)
				}
				off += int64(n)
			}
			if err != nil && (err != io.EOF || off < e.Size) {
				return short(err)
			}
		}
		if err := ended(); err != nil {
			return err
		}
		if rb.fh.Sum() != e.sum {
			return changed("its content digest differs from the recorded one")
		}
		if _, err := io.CopyBuffer(hw, io.NewSectionReader(rb.tmp, 0, e.Size), rb.buf); err != nil {
			if hw.err != nil {
				return writeErr(hw.err, diffID)
			}
			return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: the private copy", diffID)
		}
		return nil
	}
	if rb.fh.Sum() != e.sum {
		return changed("its content digest differs from the recorded one")
	}
	return nil
}

// readerFrom hides src's other methods (WriteTo), so that copies go
// through the caller's buffer.
type readerFrom struct{ r io.Reader }

func (r *readerFrom) Read(p []byte) (int, error) { return r.r.Read(p) }
