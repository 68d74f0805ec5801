package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The images (see docs/performance.md):
//
//	a  many files: a real tree as one gzip layer, then two layers that
//	   modify files, delete files and directories (whiteouts) and replace
//	   directories (opaque whiteouts);
//	b  big file: one layer with one file of poorly compressible data, one
//	   layer with one file of highly compressible text;
//	c  many layers: a real tree cut into 40 gzip layers;
//	d  a with zstd layers;
//	e  a with uncompressed (plain tar) layers;
//	f  Debian-like: a real root filesystem tree (debootstrap's minbase)
//	   as one gzip layer, then a layer that deletes /usr/share/man and
//	   /usr/share/locale (whiteouts) and adds the largest libraries again,
//	   as a package upgrade does: what upper layers shadow.
const (
	bigPrefix     = "srv/bench" // where image b's files sit
	manyLayers    = 40
	bigFull       = 1 << 30 // image b's poorly compressible file
	bigSmall      = 64 << 20
	fixedTimeUnix = 1700000000 // mtime of synthesized entries
)

var fixedTime = time.Unix(fixedTimeUnix, 0).UTC()

// treePrefix is where the real tree sits in images a, c and d (-prefix).
var treePrefix = "usr/local/go"

func imagesCmd(args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	name := fs.String("image", "", "a, b, c, d, e or f")
	small := fs.Bool("small", false, "reduced image for smoke tests")
	treeDir := fs.String("tree", "", "the real file tree for images a, c, d, e (and f: a root filesystem)")
	fs.StringVar(&treePrefix, "prefix", treePrefix, "where the tree sits in the image")
	out := fs.String("out", "", "OCI image layout to create (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("-out is required")
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists", *out)
	}
	tmp := *out + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	b, err := newBuilder(tmp)
	if err != nil {
		return err
	}
	switch *name {
	case "a", "d", "e":
		comp := map[string]string{"a": "gzip", "d": "zstd", "e": "none"}[*name]
		t, err := loadTree(*treeDir)
		if err != nil {
			return err
		}
		for i, l := range manyFilesLayers(t) {
			if err := b.addLayer(l, comp, fmt.Sprintf("layer %d of image %s", i+1, *name)); err != nil {
				return err
			}
		}
	case "b":
		n := int64(bigFull)
		if *small {
			n = bigSmall
		}
		random := map[string]entry{bigPrefix + "/random.bin": {kind: kindData, size: n, gen: randomData}}
		text := map[string]entry{bigPrefix + "/text.log": {kind: kindData, size: n / 2, gen: textData}}
		if err := b.addLayer(random, "gzip", "poorly compressible file"); err != nil {
			return err
		}
		if err := b.addLayer(text, "gzip", "highly compressible file"); err != nil {
			return err
		}
	case "c":
		t, err := loadTree(*treeDir)
		if err != nil {
			return err
		}
		for i, l := range manyLayersOf(t, manyLayers) {
			if err := b.addLayer(l, "gzip", fmt.Sprintf("slice %d of %d", i+1, manyLayers)); err != nil {
				return err
			}
		}
	case "f":
		treePrefix = ""
		t, err := loadTree(*treeDir)
		if err != nil {
			return err
		}
		for i, l := range debianLayers(t) {
			if err := b.addLayer(l, "gzip", fmt.Sprintf("layer %d of image f", i+1)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown image %q (want a, b, c, d, e or f)", *name)
	}
	if err := b.finish(); err != nil {
		return err
	}
	return os.Rename(tmp, *out)
}

// tree is a real directory tree, walked once in lexical order.
type tree struct {
	root  string
	dirs  []string // relative, "." excluded
	items []string // relative, every non-directory (files, symlinks)
	files []string // relative, regular files only
}

func loadTree(root string) (*tree, error) {
	if root == "" {
		return nil, fmt.Errorf("-tree is required for this image")
	}
	t := &tree{root: root}
	treeRoot = root
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			t.dirs = append(t.dirs, rel)
		case d.Type().IsRegular():
			t.items = append(t.items, rel)
			t.files = append(t.files, rel)
		case d.Type()&fs.ModeSymlink != 0:
			t.items = append(t.items, rel)
		}
		return nil
	})
	if err == nil && len(t.files) == 0 {
		err = fmt.Errorf("%s has no files", root)
	}
	return t, err
}

type entryKind int

const (
	kindTree     entryKind = iota // copy of the tree's item (dir, file, symlink), src set
	kindModified                  // the tree's regular file src with suffix appended
	kindWhiteout                  // empty .wh. file
	kindData                      // generated content of size bytes
	kindDir                       // a directory not in the tree
)

type entry struct {
	kind   entryKind
	src    string // path relative to the tree (kindTree, kindModified)
	suffix string
	size   int64
	gen    func(w io.Writer, n int64) error
}

// layerPath is where a tree path sits in the image.
func layerPath(rel string) string {
	if treePrefix == "" {
		return rel
	}
	return treePrefix + "/" + rel
}

// debianLayers is image f: the whole root filesystem, then a layer that
// deletes the manual pages and the message catalogs (as slimmed images
// do) and adds the largest shared libraries again (as an upgrade of
// their packages does), so that the second layer shadows the first's
// files as real images' upper layers do.
func debianLayers(t *tree) []map[string]entry {
	base := wholeTree(t)
	up := map[string]entry{}
	for _, d := range []string{"usr/share/man", "usr/share/locale"} {
		up[path.Join(path.Dir(d), ".wh."+path.Base(d))] = entry{kind: kindWhiteout}
	}
	type sized struct {
		rel  string
		size int64
	}
	var libs []sized
	for _, f := range t.files {
		if !under(f, "usr/lib") || !strings.Contains(path.Base(f), ".so") {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(t.root, filepath.FromSlash(f))); err == nil {
			libs = append(libs, sized{f, fi.Size()})
		}
	}
	sort.SliceStable(libs, func(i, j int) bool { return libs[i].size > libs[j].size })
	for _, l := range libs[:min(5, len(libs))] {
		up[l.rel] = entry{kind: kindTree, src: l.rel}
	}
	return []map[string]entry{base, up}
}

// wholeTree is a layer holding every directory and item of t.
func wholeTree(t *tree) map[string]entry {
	base := map[string]entry{}
	for _, d := range t.dirs {
		base[layerPath(d)] = entry{kind: kindTree, src: d}
	}
	for _, it := range t.items {
		base[layerPath(it)] = entry{kind: kindTree, src: it}
	}
	return base
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// manyFilesLayers is image a: the whole tree, then two layers that modify
// files, delete files (whiteouts), delete a directory and replace another
// one with part of its content (opaque whiteout). Choices are by position
// in the sorted tree, so the same tree gives the same image.
func manyFilesLayers(t *tree) []map[string]entry {
	base := wholeTree(t)
	dirs := append(pickDirs(t, 4), "", "", "", "") // "" when the tree is too small
	del2, opq2, del3, opq3 := dirs[0], dirs[1], dirs[2], dirs[3]

	deleted := map[string]bool{}
	upper := func(files []string, del, opq, layer string, modEvery, modAt, delEvery, delAt, keepEvery int) map[string]entry {
		l := map[string]entry{}
		if del != "" {
			l[layerPath(path.Join(path.Dir(del), ".wh."+path.Base(del)))] = entry{kind: kindWhiteout}
		}
		if opq != "" {
			l[layerPath(opq)] = entry{kind: kindTree, src: opq}
			l[layerPath(opq+"/.wh..wh..opq")] = entry{kind: kindWhiteout}
			l[layerPath(opq+"/BENCH-REPLACED")] = entry{kind: kindData, size: 64, gen: textData}
		}
		j := 0
		for i, f := range files {
			switch {
			case del != "" && under(f, del):
				deleted[f] = true
			case opq != "" && under(f, opq):
				if j%keepEvery == 0 {
					l[layerPath(f)] = entry{kind: kindTree, src: f}
				} else {
					deleted[f] = true
				}
				j++
			case i%modEvery == modAt:
				l[layerPath(f)] = entry{kind: kindModified, src: f, suffix: "\n// modified by the ocifetch benchmark, " + layer + "\n"}
			case i%delEvery == delAt:
				l[layerPath(path.Join(path.Dir(f), ".wh."+path.Base(f)))] = entry{kind: kindWhiteout}
				deleted[f] = true
			}
		}
		return l
	}
	l2 := upper(t.files, del2, opq2, "layer 2", 10, 3, 23, 7, 2)
	var alive []string
	for _, f := range t.files {
		if !deleted[f] {
			alive = append(alive, f)
		}
	}
	l3 := upper(alive, del3, opq3, "layer 3", 13, 5, 29, 11, 3)
	return []map[string]entry{base, l2, l3}
}

// pickDirs chooses up to n directories, none inside another, each holding
// between 1/400 and 1/15 of the tree's files, spread over the sorted tree.
func pickDirs(t *tree, n int) []string {
	count := map[string]int{}
	for _, f := range t.files {
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			count[d]++
		}
	}
	lo := max(3, len(t.files)/400)
	hi := max(lo+1, len(t.files)/15)
	var cand []string
	for _, d := range t.dirs {
		if c := count[d]; c >= lo && c <= hi {
			cand = append(cand, d)
		}
	}
	var picked []string
	for k := 1; k <= n && len(cand) > 0; k++ {
		for i := k * len(cand) / (n + 1); i < len(cand); i++ {
			d, ok := cand[i], true
			for _, p := range picked {
				if under(d, p) || under(p, d) {
					ok = false
					break
				}
			}
			if ok {
				picked = append(picked, d)
				break
			}
		}
	}
	return picked
}

// manyLayersOf is image c: the tree's entries in sorted order, cut into n
// slices of equal entry count; each layer repeats the parents it needs.
func manyLayersOf(t *tree, n int) []map[string]entry {
	all := append(append([]string{}, t.dirs...), t.items...)
	sort.Strings(all)
	layers := make([]map[string]entry, n)
	for i := range layers {
		layers[i] = map[string]entry{}
	}
	for i, p := range all {
		layers[i*n/len(all)][layerPath(p)] = entry{kind: kindTree, src: p}
	}
	return layers
}

// builder writes an OCI image layout: blobs, the uncompressed layer tars
// (for the floors of the benchmark) and layers.tsv describing them.
type builder struct {
	dir     string
	layers  []ocispec.Descriptor
	diffIDs []digest.Digest
	history []ocispec.History
	tsv     strings.Builder
}

func newBuilder(dir string) (*builder, error) {
	for _, d := range []string{"blobs/sha256", "tars"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	return &builder{dir: dir}, nil
}

// treeRoot is the real tree that kindTree and kindModified entries are
// read from (loadTree sets it).
var treeRoot string

func (b *builder) addLayer(entries map[string]entry, comp, comment string) error {
	idx := len(b.layers)
	tarRel := fmt.Sprintf("tars/%02d.tar", idx+1)
	tarFile, err := os.Create(filepath.Join(b.dir, tarRel))
	if err != nil {
		return err
	}
	defer tarFile.Close()
	blobTmp := filepath.Join(b.dir, "blobs", "sha256", ".partial")
	blobFile, err := os.Create(blobTmp)
	if err != nil {
		return err
	}
	defer blobFile.Close()

	blobHash := sha256.New()
	blobBuf := bufio.NewWriterSize(blobFile, 1<<20)
	blobOut := io.MultiWriter(blobBuf, blobHash)
	var zw io.WriteCloser
	var mediaType string
	switch comp {
	case "gzip":
		// The standard library's gzip at its default level, as docker
		// build and most image builders write layers.
		zw = gzip.NewWriter(blobOut)
		mediaType = ocispec.MediaTypeImageLayerGzip
	case "zstd":
		zw, err = zstd.NewWriter(blobOut, zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return err
		}
		mediaType = ocispec.MediaTypeImageLayerZstd
	case "none":
		// Plain tar layers, as some builders push them (docker save
		// without compression, Bazel's rules_oci by choice).
		zw = nopCloser{blobOut}
		mediaType = ocispec.MediaTypeImageLayer
	default:
		return fmt.Errorf("unknown compression %q", comp)
	}
	diffHash := sha256.New()
	tarBuf := bufio.NewWriterSize(tarFile, 1<<20)
	tw := tar.NewWriter(io.MultiWriter(tarBuf, diffHash, zw))
	if err := writeEntries(tw, entries); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	for _, w := range []*bufio.Writer{blobBuf, tarBuf} {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if err := blobFile.Close(); err != nil {
		return err
	}
	if err := tarFile.Close(); err != nil {
		return err
	}
	blobDigest := digestOf(blobHash)
	blobRel := "blobs/sha256/" + blobDigest.Encoded()
	if err := os.Rename(blobTmp, filepath.Join(b.dir, blobRel)); err != nil {
		return err
	}
	// The blob's size, like the tar's, is its file's.
	bi, err := os.Stat(filepath.Join(b.dir, blobRel))
	if err != nil {
		return err
	}
	diffID := digestOf(diffHash)
	b.layers = append(b.layers, ocispec.Descriptor{MediaType: mediaType, Digest: blobDigest, Size: bi.Size()})
	b.diffIDs = append(b.diffIDs, diffID)
	b.history = append(b.history, ocispec.History{Created: &fixedTime, CreatedBy: "ocifetch bench: " + comment})
	fi, err := os.Stat(filepath.Join(b.dir, tarRel))
	if err != nil {
		return err
	}
	fmt.Fprintf(&b.tsv, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", mediaType, blobDigest, bi.Size(), diffID, fi.Size(), blobRel, tarRel)
	fmt.Fprintf(os.Stderr, "  %s: %d entries, %.1f MiB tar, %.1f MiB %s\n", comment, len(entries),
		float64(fi.Size())/(1<<20), float64(bi.Size())/(1<<20), comp)
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func digestOf(h hash.Hash) digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
}

// writeEntries writes entries in path order, each directory before what
// it holds, adding the parent directories a layer needs.
func writeEntries(tw *tar.Writer, entries map[string]entry) error {
	for p := range entries {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; ok {
				continue
			}
			rel, ok := strings.CutPrefix(d, treePrefix+"/")
			if treePrefix == "" {
				rel, ok = d, true
			}
			if ok && treeRoot != "" {
				entries[d] = entry{kind: kindTree, src: rel}
			} else {
				entries[d] = entry{kind: kindDir}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if err := writeEntry(tw, p, entries[p]); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func writeEntry(tw *tar.Writer, name string, e entry) error {
	switch e.kind {
	case kindDir:
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: fixedTime})
	case kindWhiteout:
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: fixedTime})
	case kindData:
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: e.size, ModTime: fixedTime}); err != nil {
			return err
		}
		return e.gen(tw, e.size)
	}
	src := filepath.Join(treeRoot, filepath.FromSlash(e.src))
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(src); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	hdr.ModTime = fi.ModTime().Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if !fi.Mode().IsRegular() {
		return tw.WriteHeader(hdr)
	}
	hdr.Size += int64(len(e.suffix))
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if n, err := io.Copy(tw, f); err != nil {
		return err
	} else if n != fi.Size() {
		return fmt.Errorf("changed while reading: %d bytes, want %d", n, fi.Size())
	}
	_, err = io.WriteString(tw, e.suffix)
	return err
}

// randomData writes n poorly compressible bytes, the same on every
// machine: ChaCha8 from a fixed seed.
func randomData(w io.Writer, n int64) error {
	var seed [32]byte
	copy(seed[:], "ocifetch benchmark, image b.....")
	r := rand.NewChaCha8(seed)
	_, err := io.Copy(w, io.LimitReader(r, n))
	return err
}

// textData writes n bytes of log-like text (about 10:1 with gzip), the
// same on every machine.
func textData(w io.Writer, n int64) error {
	r := rand.New(rand.NewPCG(6, 6))
	bw := bufio.NewWriterSize(w, 1<<16)
	var line []byte
	paths := []string{"/api/v1/items", "/api/v1/users", "/healthz", "/api/v1/orders", "/static/app.js"}
	for i := 0; n > 0; i++ {
		line = fmt.Appendf(line[:0], "2024-05-01T%02d:%02d:%02d.%03dZ level=info msg=\"request served\" method=GET path=%s/%d status=200 bytes=%d duration_ms=%d\n",
			i/3600000%24, i/60000%60, i/1000%60, i%1000, paths[r.IntN(len(paths))], r.IntN(1000), r.IntN(20000), r.IntN(50))
		if int64(len(line)) > n {
			line = line[:n]
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
		n -= int64(len(line))
	}
	return bw.Flush()
}

func (b *builder) writeBlob(data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	return d, os.WriteFile(filepath.Join(b.dir, "blobs", "sha256", d.Encoded()), data, 0o644)
}

func (b *builder) finish() error {
	cfg := ocispec.Image{
		Created:  &fixedTime,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   ocispec.ImageConfig{Env: []string{"PATH=/usr/local/go/bin:/usr/bin:/bin"}, Cmd: []string{"/bin/sh"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: b.diffIDs},
		History:  b.history,
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgDigest, err := b.writeBlob(cfgJSON)
	if err != nil {
		return err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfgJSON))},
		Layers:    b.layers,
	}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return err
	}
	mDigest, err := b.writeBlob(mJSON)
	if err != nil {
		return err
	}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType:   ocispec.MediaTypeImageManifest,
			Digest:      mDigest,
			Size:        int64(len(mJSON)),
			Annotations: map[string]string{ocispec.AnnotationRefName: "latest"},
		}},
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"index.json":   idxJSON,
		"oci-layout":   []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"layers.tsv":   []byte(b.tsv.String()),
		"manifest.txt": []byte(mDigest.String() + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
