package apply

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/internal/recipe"
)

// Names inside a state directory.
const (
	stateFile    = "state.json"
	manifestFile = "tree.json.zst"
	tarsplitDir  = "tarsplit"
	shadowDir    = "shadow"
	lockFile     = "lock"
	upgradeDir   = "upgrade"
	droppedExt   = ".dropped"
	stateVersion = 2
)

// The values of State.Status.
const (
	// StatusApplying: Apply started and has not finished. The process
	// that ran it crashed (a failure it caught removes the state): the
	// next Apply into the same target empties it and starts over.
	StatusApplying = "applying"
	// StatusComplete: every layer was applied and verified, and the
	// metadata of the state directory describes the tree.
	StatusComplete = "complete"
)

// ErrStateVersion is the cause when a state directory was recorded by
// another version of this package (state.json's version is not this
// package's): errors.Is finds it. A complete tree of version 1 can be
// brought up to date with Upgrade.
var ErrStateVersion = errors.New("the state directory was recorded by another version of ocifetch")

// State is the content of state.json.
type State struct {
	Version   int           `json:"version"`
	Status    string        `json:"status"`
	Reference string        `json:"reference,omitempty"`
	Manifest  digest.Digest `json:"manifest,omitempty"`
	Layers    []StateLayer  `json:"layers"`
	// Ownership and Devices are the policies the apply used (Ownership's
	// and Devices' String); UID and GID the caller's effective ids, which
	// own everything under "caller".
	Ownership string `json:"ownership"`
	Devices   string `json:"devices"`
	UID       int    `json:"uid"`
	GID       int    `json:"gid"`
	Shadow    bool   `json:"shadow"` // payloads of replaced files were kept
	// Target identifies the directory the state describes (version 2).
	Target *TargetID `json:"target,omitempty"`
	// FileDigest names the content digest of files and payloads
	// (version 2; see the package documentation).
	FileDigest string `json:"fileDigest,omitempty"`
	// MaxDepth is the depth limit the apply enforced, which Verify and
	// Rebuild enforce too (version 2).
	MaxDepth  int        `json:"maxDepth,omitempty"`
	Started   time.Time  `json:"started"`
	Completed *time.Time `json:"completed,omitempty"`
}

// StateLayer is one layer of a State, lowest first.
type StateLayer struct {
	DiffID    digest.Digest `json:"diffID"`
	Digest    digest.Digest `json:"digest,omitempty"`
	MediaType string        `json:"mediaType,omitempty"`
	// TarSplit is the layer's tar-split metadata, relative to the state
	// directory.
	TarSplit string `json:"tarSplit"`
	// Size is the blob's size (0 when an older version recorded the
	// state).
	Size int64 `json:"size,omitempty"`
	// Recipe is how the compressed blob is made again from the tar; nil
	// for uncompressed layers, and for layers an older version recorded
	// (format 2 before it had recipes: they are not reproducible).
	Recipe *LayerRecipe `json:"recipe,omitempty"`
}

// TargetID ties a state directory to the directory it describes, without
// writing anything into that directory (where a container could forge
// it): its device, inode and, where the file system keeps one, birth time
// (statx). A directory removed and made again under the same name has
// another identity.
type TargetID struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Btime int64  `json:"btime,omitempty"` // nanoseconds since the epoch; 0: not kept
}

func (t TargetID) String() string {
	return fmt.Sprintf("device %d:%d inode %d", unix.Major(t.Dev), unix.Minor(t.Dev), t.Ino)
}

// targetID returns the identity of the directory open as fd.
func targetID(fd int) (TargetID, error) {
	var sx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_BTIME|unix.STATX_TYPE, &sx); err != nil {
		return TargetID{}, err
	}
	id := TargetID{Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino}
	if sx.Mask&unix.STATX_BTIME != 0 {
		id.Btime = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	return id, nil
}

// targetIDOf returns the identity of the directory path (a symbolic link
// the caller gave is followed).
func targetIDOf(path string) (TargetID, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return TargetID{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return targetID(fd)
}

// DefaultStateDir returns the state directory for the root filesystem
// target: the hidden sibling <parent>/.<base>.ocifetch of its absolute
// path ("." and "./x" included), on the same file system as the tree (so
// that the shadow store is filled by rename) and never inside it.
func DefaultStateDir(target string) string {
	t, err := filepath.Abs(target)
	if err != nil {
		t = filepath.Clean(target)
	}
	return filepath.Join(filepath.Dir(t), "."+filepath.Base(t)+".ocifetch")
}

// Status reads the state.json of stateDir. A missing one is not_found; one
// that cannot be read or parsed is internal; one recorded by another
// version is invalid_argument (ErrStateVersion). A caller must treat
// anything but Status == StatusComplete as an incomplete tree.
func Status(stateDir string) (*State, error) {
	s, err := readState(stateDir)
	if err != nil {
		return nil, err
	}
	if s.Version != stateVersion {
		return nil, versionError(stateDir, s.Version)
	}
	return s, nil
}

func versionError(stateDir string, v int) error {
	if v < stateVersion {
		return errdefs.Wrap(ErrStateVersion, errdefs.ErrInvalidArgument,
			"%s was recorded by an older version of ocifetch (state format %d, this one reads %d): upgrade it with Upgrade (the CLI's verify --upgrade), or remove it and its tree and unpack again",
			stateDir, v, stateVersion)
	}
	return errdefs.Wrap(ErrStateVersion, errdefs.ErrInvalidArgument,
		"%s was recorded by a newer version of ocifetch (state format %d, this one reads %d): use that version", stateDir, v, stateVersion)
}

// readState reads state.json whatever its version, from a state
// directory the caller can trust (checkStateDir).
func readState(stateDir string) (*State, error) {
	p := filepath.Join(stateDir, stateFile)
	f, err := openStateFile(stateDir, stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.Wrap(err, errdefs.ErrNotFound, "no apply state in %s", stateDir)
	}
	if err != nil {
		if hasKind(err) {
			return nil, err
		}
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "reading the apply state")
	}
	defer f.Close()
	const max = 16 << 20
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && len(b) > max {
		err = fmt.Errorf("%s is larger than %d bytes", p, max)
	}
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "reading the apply state")
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "apply state %s is corrupt", p)
	}
	if s.Version == stateVersion || s.Version == 1 {
		for _, l := range s.Layers {
			if err := l.DiffID.Validate(); err != nil {
				return nil, errdefs.Wrap(err, errdefs.ErrInternal, "apply state %s is corrupt", p)
			}
		}
	}
	return &s, nil
}

// layerKey names a layer's files in the state directory: "<alg>-<hex>" of
// its (validated) diffID.
func layerKey(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

func tarsplitName(d digest.Digest) string {
	return tarsplitDir + "/" + layerKey(d) + ".json.zst"
}

// payloadRef names the recorded payload a path of the tree holds: entry
// pos of the layer'th layer.
type payloadRef struct {
	layer int32
	pos   int32
}

type devIno struct{ dev, ino uint64 }

// stateRec is the recorder of an Apply with a state directory: it writes
// each layer's tar-split metadata, keeps the shadow store of displaced
// payloads, and collects the content digests for the tree manifest.
//
// What it keeps in memory across layers is per path a pathKey and a
// payloadRef (index: which payload the path holds), and per regular file a
// devIno and a record number (sums: where its digest lies on disk): a few
// dozen bytes per entry, whatever the names' lengths.
type stateRec struct {
	ctx    context.Context
	dir    string
	dirFD  int // O_PATH descriptor of dir
	shadow bool
	state  State

	layer int    // current layer
	key   string // its layerKey
	// tar-split of the current layer, written to tmp
	tmp *atomicfile.File
	bw  *bufio.Writer
	zw  *zstd.Encoder
	out []byte // entries encoded, not yet written to zw (tar-split or manifest)
	pos int

	keys     pathHasher
	index    map[pathKey]payloadRef // path -> payload it holds
	sums     *sumStore              // content digest of each regular file written
	shadowFD map[string]int         // layerKey -> O_PATH descriptor of shadow/<key>
	probe    *layerProbe            // the recipe of the current or last layer
	// noRecipes: probe nothing (withoutRecipes, for a benchmark).
	noRecipes bool
	probeOpts []recipe.Option // withProbe
}

// newStateRec starts recording into the state directory dir, which holds
// state.json with StatusApplying.
func newStateRec(ctx context.Context, dir string, st State, noShadow bool) (*stateRec, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "state directory %s", dir)
	}
	s := &stateRec{
		ctx: ctx, dir: dir, dirFD: fd, shadow: !noShadow, state: st, keys: newPathHasher(),
		index: make(map[pathKey]payloadRef), shadowFD: make(map[string]int),
	}
	if s.sums, err = newSumStore(dir); err != nil {
		s.close()
		return nil, err
	}
	// Concurrency 2 compresses the metadata in the encoder's own goroutine,
	// off the applier's.
	s.zw, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2), zstd.WithLowerEncoderMem(true))
	if err != nil {
		s.close()
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "zstd")
	}
	return s, nil
}

// writeState replaces state.json of dir atomically.
func writeState(dir string, st *State) error {
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "apply state")
	}
	return atomicfile.WriteFile(filepath.Join(dir, stateFile), append(b, '\n'), 0o644)
}

func (s *stateRec) close() {
	s.abortLayer()
	for _, fd := range s.shadowFD {
		unix.Close(fd)
	}
	s.shadowFD = nil
	if s.dirFD >= 0 {
		unix.Close(s.dirFD)
		s.dirFD = -1
	}
	if s.zw != nil {
		s.zw.Close()
	}
	if s.sums != nil {
		s.sums.close()
	}
}

// beginLayer starts recording the tar-split of the i'th layer.
func (s *stateRec) beginLayer(i int) (layerTaps, error) {
	s.abortLayer()
	s.layer, s.key = i, layerKey(s.state.Layers[i].DiffID)
	f, err := atomicfile.Create(filepath.Join(s.dir, tarsplitName(s.state.Layers[i].DiffID)), 0o644)
	if err != nil {
		return layerTaps{}, errdefs.Wrap(err, errdefs.ErrInternal, "recording tar-split")
	}
	s.tmp = f
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(f, 64<<10)
	} else {
		s.bw.Reset(f)
	}
	s.zw.Reset(s.bw)
	s.out = s.out[:0]
	s.pos = 0
	return s.startProbe(i), nil
}

func (s *stateRec) recErr(err error) error {
	return errdefs.Wrap(err, errdefs.ErrInternal, "recording tar-split of layer %d", s.layer+1)
}

func (s *stateRec) segment(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	s.out = appendEntry(s.out, &tsEntry{Entry: storage.Entry{Type: storage.SegmentType, Payload: b, Position: s.pos}})
	s.pos++
	if err := s.writeOut(false); err != nil {
		return s.recErr(err)
	}
	return nil
}

// writeOut hands the encoded entries to the compressor once enough
// accumulated, or all of them when final.
func (s *stateRec) writeOut(final bool) error {
	if len(s.out) == 0 || !final && len(s.out) < 64<<10 {
		return nil
	}
	_, err := s.zw.Write(s.out)
	s.out = s.out[:0]
	return err
}

func (s *stateRec) file(f *fileRecord) error {
	e := tsEntry{Entry: storage.Entry{Type: storage.FileType, Size: f.size, Payload: f.crc, Position: s.pos}}
	e.SetName(f.name)
	if f.size > 0 {
		e.sum, e.hasSum = *f.sum, true
		if f.renamed {
			e.setAt(f.at)
		}
		s.index[s.keys.key(f.at)] = payloadRef{layer: int32(s.layer), pos: int32(s.pos)}
	}
	s.out = appendEntry(s.out, &e)
	s.pos++
	if err := s.writeOut(false); err != nil {
		return s.recErr(err)
	}
	return nil
}

func (s *stateRec) wantDigests() bool { return true }

func (s *stateRec) written(dev, ino uint64, d *sum) error {
	if err := s.sums.add(dev, ino, d); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "recording content digests")
	}
	return nil
}

// endLayer publishes the tar-split of a layer whose diffID matched.
func (s *stateRec) endLayer(diffID digest.Digest) error {
	if diffID != s.state.Layers[s.layer].DiffID {
		return errdefs.New(errdefs.ErrInternal, "layer %d ended with diffID %s, recording %s", s.layer+1, diffID, s.state.Layers[s.layer].DiffID)
	}
	err := s.writeOut(true)
	if err == nil {
		err = s.zw.Close()
	}
	if err == nil {
		err = s.bw.Flush()
	}
	if err == nil {
		err = s.tmp.Commit()
	}
	s.tmp.Abort()
	s.tmp = nil
	if err != nil {
		return s.recErr(err)
	}
	s.endProbe()
	return nil
}

// abortLayer drops the tar-split being recorded.
func (s *stateRec) abortLayer() {
	s.dropProbe()
	if s.tmp != nil {
		s.tmp.Abort()
		s.tmp = nil
	}
}

// complete writes the tree's manifest and marks the state complete.
func (s *stateRec) complete(ctx context.Context, target string, o *options) error {
	s.joinProbe()
	// The shadow store is compressed while the manifest is written: one
	// reads the tree, the other the state directory.
	var compacted chan error
	if o.compactShadow && s.shadow {
		compacted = make(chan error, 1)
		go func() {
			_, err := compactShadow(ctx, s.dir)
			compacted <- err
		}()
	}
	err := s.writeManifest(ctx, target, o)
	if compacted != nil {
		if cerr := <-compacted; err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Join(s.dir, shadowDir)); err != nil {
		return err
	}
	now := time.Now().UTC()
	s.state.Status, s.state.Completed = StatusComplete, &now
	return writeState(s.dir, &s.state)
}

// displace moves f into shadow/<layer>/<position> when it holds a
// recorded payload, so that the layer that wrote it can still be rebuilt.
// Other hard links to the same inode are not affected, and need not be: a
// rebuild reads each payload from where its entry wrote it, or from its
// shadow copy. Without the shadow store the payload is given up and a
// marker <position>.dropped says so.
func (s *stateRec) displace(f *treeFile) (bool, error) {
	k := s.keys.key(f.canon)
	ref, ok := s.index[k]
	if !ok {
		return false, nil
	}
	delete(s.index, k)
	if f.st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil // cannot be: the index holds regular files only
	}
	dirfd, key, err := s.shadowDirFD(ref.layer)
	if err != nil {
		return false, err
	}
	pos := posName(ref.pos)
	if !s.shadow {
		fd, err := unix.Openat(dirfd, pos+droppedExt, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
		if err != nil {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store: marking %s/%s", key, pos)
		}
		unix.Close(fd)
		return false, nil
	}
	err = f.moveOut(dirfd, pos)
	if errors.Is(err, unix.EXDEV) {
		// The state directory is on another file system: copy, and leave
		// the original for the caller to remove.
		r, err := f.open()
		if err == nil {
			err = copyInto(dirfd, filepath.Join(s.dir, shadowDir, key), pos, r)
			r.Close()
		}
		if err != nil {
			return false, fsError(err, "copying %q into the shadow store", f.canon)
		}
		return false, nil
	}
	if err != nil {
		return false, fsError(err, "moving %q into the shadow store", f.canon)
	}
	return true, nil
}

func (s *stateRec) holdsPayloads() bool { return len(s.index) > 0 }

// shadowDirFD returns a descriptor of shadow/<key of layer>, created when
// missing.
func (s *stateRec) shadowDirFD(layer int32) (int, string, error) {
	key := layerKey(s.state.Layers[layer].DiffID)
	if fd, ok := s.shadowFD[key]; ok {
		return fd, key, nil
	}
	rel := shadowDir + "/" + key
	if err := unix.Mkdirat(s.dirFD, rel, 0700); err != nil && err != unix.EEXIST {
		return -1, key, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
	}
	fd, err := unix.Openat(s.dirFD, rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, key, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
	}
	s.shadowFD[key] = fd
	return fd, key, nil
}

// copyInto writes r to dir/name (dirfd, an O_PATH descriptor of dir);
// the fallback of the shadow store when the tree and the state are on
// different file systems.
func copyInto(dirfd int, dir, name string, r io.Reader) error {
	f, err := atomicfile.CreateAt(dirfd, dir, name, 0600)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	return f.Commit()
}

func posName(pos int32) string { return strconv.Itoa(int(pos)) }

// sumStore keeps the content digest of every regular file an apply wrote,
// on disk: an anonymous file in the state directory holds the digests one
// after the other, and memory holds per file only its inode and record
// number.
type sumStore struct {
	f     *os.File
	w     *bufio.Writer
	n     uint32
	byIno map[devIno]uint32
}

func newSumStore(dir string) (*sumStore, error) {
	f, err := scratchFile(dir, "digests")
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "state directory %s", dir)
	}
	return &sumStore{f: f, w: bufio.NewWriterSize(f, 64<<10), byIno: make(map[devIno]uint32)}, nil
}

// scratchFile makes an anonymous file in dir, for data nothing else may
// reach: O_TMPFILE, or where the file system has none a named file
// (atomicfile.TempPrefix+name), unlinked at once.
func scratchFile(dir, name string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, name)), nil
	}
	f, err := os.CreateTemp(dir, atomicfile.TempPrefix+name+"-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

func (s *sumStore) add(dev, ino uint64, d *sum) error {
	if _, err := s.w.Write(d[:]); err != nil {
		return err
	}
	s.byIno[devIno{dev, ino}] = s.n
	s.n++
	return nil
}

// get returns the digest recorded for a file; ok is false for a file the
// apply did not write.
func (s *sumStore) get(dev, ino uint64) (d sum, ok bool, err error) {
	i, ok := s.byIno[devIno{dev, ino}]
	if !ok {
		return d, false, nil
	}
	if s.w.Buffered() > 0 {
		if err := s.w.Flush(); err != nil {
			return d, false, err
		}
	}
	if _, err := s.f.ReadAt(d[:], int64(i)*digestSize); err != nil {
		return d, false, err
	}
	return d, true, nil
}

func (s *sumStore) close() {
	s.f.Close()
}
