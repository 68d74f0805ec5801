package apply

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
)

// Names inside a state directory.
const (
	stateFile    = "state.json"
	treeFile     = "tree.json.zst"
	tarsplitDir  = "tarsplit"
	shadowDir    = "shadow"
	droppedExt   = ".dropped"
	stateVersion = 1
)

// The values of State.Status.
const (
	// StatusApplying: Apply started and has not finished, or failed. The
	// tree is incomplete and must be wiped and applied again.
	StatusApplying = "applying"
	// StatusComplete: every layer was applied and verified, and the
	// metadata of the state directory describes the tree.
	StatusComplete = "complete"
)

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
	Ownership string     `json:"ownership"`
	Devices   string     `json:"devices"`
	UID       int        `json:"uid"`
	GID       int        `json:"gid"`
	Shadow    bool       `json:"shadow"` // payloads of replaced files were kept
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
}

// DefaultStateDir returns the state directory for the root filesystem
// target: the hidden sibling <parent>/.<base>.ocifetch, on the same file
// system as the tree (so that the shadow store is filled by rename) and
// never inside it.
func DefaultStateDir(target string) string {
	t := filepath.Clean(target)
	return filepath.Join(filepath.Dir(t), "."+filepath.Base(t)+".ocifetch")
}

// Status reads the state.json of stateDir. A missing one is not_found; one
// that cannot be read or parsed is internal. A caller must treat anything
// but Status == StatusComplete as an incomplete tree, to be wiped with its
// state directory and applied again.
func Status(stateDir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.Wrap(err, errdefs.ErrNotFound, "no apply state in %s", stateDir)
	}
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "reading the apply state")
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "apply state %s is corrupt", filepath.Join(stateDir, stateFile))
	}
	if s.Version != stateVersion {
		return nil, errdefs.New(errdefs.ErrInternal, "apply state %s has version %d, this program reads %d", filepath.Join(stateDir, stateFile), s.Version, stateVersion)
	}
	for _, l := range s.Layers {
		if err := l.DiffID.Validate(); err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInternal, "apply state %s is corrupt", filepath.Join(stateDir, stateFile))
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

// stateRec records one Apply into its state directory. It is the
// applier's entryRecorder and keeps the in-memory index of which recorded
// payload each path holds.
type stateRec struct {
	dir    string
	dirFD  int // O_PATH descriptor of dir
	shadow bool
	state  State

	layer int    // current layer
	key   string // its layerKey
	// tar-split of the current layer, written to tmp
	tmp  *atomicfile.File
	bw   *bufio.Writer
	zw   *zstd.Encoder
	out  []byte // entries encoded, not yet written to zw (tar-split or manifest)
	pos  int
	last int // position of the last file entry

	index    map[string]payloadRef // path -> payload it holds
	crcs     map[devIno]uint64     // content CRC-64 of each regular file written
	shadowFD map[string]int        // layerKey -> O_PATH descriptor of shadow/<key>
}

// openState prepares stateDir for an Apply of layers to target and writes
// state.json with StatusApplying.
func openState(target string, layers []Layer, o *options) (*stateRec, error) {
	dir, err := filepath.Abs(o.stateDir)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "state directory")
	}
	if err := checkOutside(target, dir); err != nil {
		return nil, err
	}
	if err := prepareStateDir(dir); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "state directory %s", dir)
	}
	s := &stateRec{
		dir: dir, dirFD: fd, shadow: !o.noShadow,
		index: make(map[string]payloadRef), crcs: make(map[devIno]uint64), shadowFD: make(map[string]int),
		state: State{
			Version: stateVersion, Status: StatusApplying, Reference: o.imageRef, Manifest: o.manifest,
			Ownership: o.ownership.String(), Devices: o.devices.String(), UID: os.Geteuid(), GID: os.Getegid(),
			Shadow: !o.noShadow, Started: time.Now().UTC(),
		},
	}
	for _, l := range layers {
		s.state.Layers = append(s.state.Layers, StateLayer{DiffID: l.DiffID, Digest: l.Digest, MediaType: l.MediaType, TarSplit: tarsplitName(l.DiffID)})
	}
	// Concurrency 2 compresses the metadata in the encoder's own goroutine,
	// off the applier's.
	s.zw, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2), zstd.WithLowerEncoderMem(true))
	if err != nil {
		s.close()
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "zstd")
	}
	if err := s.writeState(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// checkOutside refuses a state directory inside the target or containing
// it: the tree must never show the state, and wiping one must never touch
// the other.
func checkOutside(target, stateDir string) error {
	t, err := filepath.Abs(target)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target")
	}
	if r, err := filepath.EvalSymlinks(t); err == nil {
		t = r
	}
	s := stateDir
	if r, err := filepath.EvalSymlinks(filepath.Dir(s)); err == nil {
		s = filepath.Join(r, filepath.Base(s))
	}
	within := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+string(filepath.Separator)) || b == "/"
	}
	if within(s, t) || within(t, s) {
		return errdefs.New(errdefs.ErrInvalidArgument, "state directory %s must lie outside the target %s", stateDir, target)
	}
	return nil
}

// prepareStateDir creates dir, or empties it when it holds a previous
// state; a directory holding anything else is refused.
func prepareStateDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0700); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "creating the state directory")
		}
	case err != nil:
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "state directory %s", dir)
	case len(ents) > 0:
		if _, err := os.Lstat(filepath.Join(dir, stateFile)); err != nil {
			return errdefs.New(errdefs.ErrInvalidArgument, "state directory %s is not empty and holds no apply state", dir)
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return errdefs.Wrap(err, errdefs.ErrInternal, "clearing the previous state")
			}
		}
	}
	for _, d := range []string{tarsplitDir, shadowDir} {
		if err := os.Mkdir(filepath.Join(dir, d), 0700); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "state directory")
		}
	}
	return nil
}

// writeState replaces state.json atomically.
func (s *stateRec) writeState() error {
	b, err := json.MarshalIndent(&s.state, "", "\t")
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "apply state")
	}
	return atomicfile.WriteFile(filepath.Join(s.dir, stateFile), append(b, '\n'), 0o644)
}

func (s *stateRec) close() {
	s.abort()
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
}

// beginLayer starts recording the tar-split of the i'th layer.
func (s *stateRec) beginLayer(i int) error {
	s.abort()
	s.layer, s.key = i, layerKey(s.state.Layers[i].DiffID)
	f, err := atomicfile.Create(filepath.Join(s.dir, tarsplitName(s.state.Layers[i].DiffID)), 0o644)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "recording tar-split")
	}
	s.tmp = f
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(f, 64<<10)
	} else {
		s.bw.Reset(f)
	}
	s.zw.Reset(s.bw)
	s.out = s.out[:0]
	s.pos, s.last = 0, -1
	return nil
}

func (s *stateRec) recErr(err error) error {
	return errdefs.Wrap(err, errdefs.ErrInternal, "recording tar-split of layer %d", s.layer)
}

func (s *stateRec) segment(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	s.out = appendEntry(s.out, &storage.Entry{Type: storage.SegmentType, Payload: b, Position: s.pos})
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

func (s *stateRec) file(name string, size int64, crc []byte) error {
	e := storage.Entry{Type: storage.FileType, Size: size, Payload: crc, Position: s.pos}
	e.SetName(name)
	s.out = appendEntry(s.out, &e)
	s.last = s.pos
	s.pos++
	if err := s.writeOut(false); err != nil {
		return s.recErr(err)
	}
	return nil
}

func (s *stateRec) wantCRC() bool { return true }

// end publishes the tar-split of a layer whose diffID matched.
func (s *stateRec) end(diffID digest.Digest) error {
	if diffID != s.state.Layers[s.layer].DiffID {
		return errdefs.New(errdefs.ErrInternal, "layer %d ended with diffID %s, recording %s", s.layer, diffID, s.state.Layers[s.layer].DiffID)
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
	return nil
}

// abort drops the tar-split being recorded.
func (s *stateRec) abort() {
	if s.tmp != nil {
		s.tmp.Abort()
		s.tmp = nil
	}
}

// recorded notes that the tree's path name now holds the payload of the
// file entry just recorded.
func (s *stateRec) recorded(name string) {
	s.index[name] = payloadRef{layer: int32(s.layer), pos: int32(s.last)}
}

// content notes the CRC-64 of the content of a regular file written.
func (s *stateRec) content(dev, ino, crc uint64) {
	s.crcs[devIno{dev, ino}] = crc
}

// complete writes the tree's manifest and marks the state complete.
func (s *stateRec) complete(ctx context.Context, target string) error {
	if err := s.writeManifest(ctx, target); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Join(s.dir, shadowDir)); err != nil {
		return err
	}
	now := time.Now().UTC()
	s.state.Status, s.state.Completed = StatusComplete, &now
	return s.writeState()
}

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

// copyTo writes r to dir/name through a temporary file; the fallback of
// the shadow store when the tree and the state are on different file
// systems.
func copyInto(dirfd int, name string, r io.Reader) error {
	tmp := ".tmp-" + name
	fd, err := unix.Openat(dirfd, tmp, unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
	}
	return err
}

func posName(pos int32) string { return strconv.Itoa(int(pos)) }
