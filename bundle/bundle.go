// Package bundle turns an image config into an OCI runtime bundle's
// config.json, as image-spec conversion.md describes: Entrypoint and Cmd
// become process.args, Env process.env, WorkingDir process.cwd, User is
// resolved against the root filesystem's /etc/passwd and /etc/group, and
// labels and the named config fields become annotations.
//
// The root filesystem is read through a confined root: /etc/passwd and
// /etc/group must be regular files inside it (a symbolic link is followed
// inside the root, never to a host file; a FIFO or a device is refused, not
// opened) and are read up to a size cap. No code from the image is ever loaded: names are looked up by
// parsing the files, never through NSS.
package bundle

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// maxDBSize caps how much of /etc/passwd or /etc/group is read.
const maxDBSize = 4 << 20

// Option configures Spec.
type Option func(*options) error

type options struct {
	rootPath string
	terminal bool
	hostname string
}

// WithRootPath sets root.path in config.json (default "rootfs", relative
// to the bundle directory).
func WithRootPath(p string) Option {
	return func(o *options) error {
		if p == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "empty root path")
		}
		o.rootPath = p
		return nil
	}
}

// WithTerminal sets process.terminal.
func WithTerminal(t bool) Option {
	return func(o *options) error {
		o.terminal = t
		return nil
	}
}

// WithHostname sets hostname.
func WithHostname(h string) Option {
	return func(o *options) error {
		o.hostname = h
		return nil
	}
}

// Spec builds the runtime configuration for img, whose root filesystem is
// at rootfs (already unpacked; used to resolve the user).
func Spec(ctx context.Context, img ocispec.Image, rootfs string, opts ...Option) (*rspec.Spec, error) {
	o := &options{rootPath: "rootfs", hostname: "ocifetch"}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	s := defaultSpec()
	s.Root = &rspec.Root{Path: o.rootPath}
	s.Hostname = o.hostname
	c := img.Config
	s.Process.Terminal = o.terminal
	s.Process.Args = append(append([]string{}, c.Entrypoint...), c.Cmd...)
	s.Process.Env = append([]string{}, c.Env...)
	if len(s.Process.Env) == 0 {
		s.Process.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	s.Process.Cwd = c.WorkingDir
	if s.Process.Cwd == "" {
		s.Process.Cwd = "/"
	}
	user, err := resolveUser(rootfs, c.User)
	if err != nil {
		return nil, err
	}
	s.Process.User = user
	s.Annotations = annotations(img)
	return s, nil
}

// Write writes config.json into the bundle directory, atomically and
// durably.
func Write(dir string, s *rspec.Spec) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "encoding config.json")
	}
	return atomicfile.WriteFile(filepath.Join(dir, "config.json"), append(data, '\n'), 0o644)
}

// annotations maps labels and the config fields conversion.md names. The
// named fields win over a label of the same key.
func annotations(img ocispec.Image) map[string]string {
	a := maps.Clone(img.Config.Labels)
	if a == nil {
		a = map[string]string{}
	}
	set := func(k, v string) {
		if v != "" {
			a[k] = v
		}
	}
	set("org.opencontainers.image.os", img.OS)
	set("org.opencontainers.image.architecture", img.Architecture)
	set("org.opencontainers.image.variant", img.Variant)
	set("org.opencontainers.image.os.version", img.OSVersion)
	if len(img.OSFeatures) > 0 {
		set("org.opencontainers.image.os.features", strings.Join(img.OSFeatures, ","))
	}
	set("org.opencontainers.image.author", img.Author)
	if img.Created != nil {
		set("org.opencontainers.image.created", img.Created.UTC().Format("2006-01-02T15:04:05Z07:00"))
	}
	set("org.opencontainers.image.stopSignal", img.Config.StopSignal)
	if len(img.Config.ExposedPorts) > 0 {
		ports := make([]string, 0, len(img.Config.ExposedPorts))
		for p := range img.Config.ExposedPorts {
			ports = append(ports, p)
		}
		sort.Strings(ports)
		set("org.opencontainers.image.exposedPorts", strings.Join(ports, ","))
	}
	if len(a) == 0 {
		return nil
	}
	return a
}

// resolveUser turns the config's User ("", "name", "uid", "name:group",
// "uid:gid", and mixes) into uid, gid and supplementary groups. Names must
// exist in the image's /etc/passwd and /etc/group; a numeric uid need not.
func resolveUser(rootfs, spec string) (rspec.User, error) {
	if spec == "" {
		spec = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return rspec.User{}, errdefs.New(errdefs.ErrManifestInvalid, "image config user %q is malformed", spec)
	}
	db := &userDB{rootfs: rootfs}
	var u rspec.User
	var name string
	if uid, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		u.UID = uint32(uid)
		if e, ok, err := db.userByUID(u.UID); err != nil {
			return u, err
		} else if ok {
			u.GID, name = e.gid, e.name
		}
	} else {
		e, ok, err := db.userByName(userPart)
		if err != nil {
			return u, err
		}
		if !ok {
			return u, errdefs.New(errdefs.ErrNotFound, "user %q of the image config is not in the image's /etc/passwd", userPart)
		}
		u.UID, u.GID, name = e.uid, e.gid, e.name
	}
	if hasGroup {
		if gid, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			u.GID = uint32(gid)
		} else {
			g, ok, err := db.groupByName(groupPart)
			if err != nil {
				return u, err
			}
			if !ok {
				return u, errdefs.New(errdefs.ErrNotFound, "group %q of the image config is not in the image's /etc/group", groupPart)
			}
			u.GID = g.gid
		}
	}
	// Supplementary groups come from /etc/group membership, unless a group
	// was named explicitly (then it is the only one, as Docker does).
	if name != "" && !hasGroup {
		gids, err := db.groupsOf(name, u.GID)
		if err != nil {
			return u, err
		}
		u.AdditionalGids = gids
	}
	return u, nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// userDB reads /etc/passwd and /etc/group of a root filesystem, confined
// to it, once each.
type userDB struct {
	rootfs string
	passwd []passwdEntry
	group  []groupEntry
	loaded [2]bool
}

// maxLinks bounds the symbolic links followed to reach /etc/passwd or
// /etc/group, as the kernel bounds a path's (MAXSYMLINKS).
const maxLinks = 40

// maxSteps bounds the components followInRoot looks up in all. Each
// lookup resolves its directory from the root, so 40 links each 800
// directories deep and back cost 32,000 lookups and a second; a passwd
// that Nix or anyone links takes a dozen.
const maxSteps = 1024

// readDB reads a file of the image through a confined root: a regular file
// only, at most maxDBSize bytes. A missing file reads as empty. A symbolic
// link is followed inside the root, never outside it, as the runtime will
// once the root is the container's /: an absolute target is taken from
// the root, a relative one from the link's directory, ".." stopping at
// the root (followInRoot). Images built by Nix link /etc/passwd into /nix/store; a link
// to a host file such as /etc/shadow leads to the image's own copy.
func readDB(rootfs, name string, each func(fields []string)) error {
	root, err := fsroot.Open(rootfs)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "opening root filesystem")
	}
	defer root.Close()
	at, err := followInRoot(root, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrPathEscape, "the image's /%s", name)
	}
	f, err := root.OpenFile(at)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrPathEscape, "the image's /%s is not a regular file inside the root filesystem", name)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxDBSize))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		each(strings.Split(line, ":"))
	}
	if err := sc.Err(); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "reading the image's /%s", name)
	}
	return nil
}

// followInRoot resolves name inside root as the kernel resolves a path
// whose / is the root: one component at a time, a symbolic link replaced
// by its target where it is met, ".." taken from the directory reached
// (a link's, not the link's name's: with etc/conf -> /nix/x/etc/conf,
// etc/conf/../passwd is /nix/x/etc/passwd) and stopping at the root. The
// final component is left for OpenFile, which refuses anything but a
// regular file. Every step is an Lstat or Readlink of the confined root;
// a missing or unreadable component ends the walk with its error.
func followInRoot(root *fsroot.Root, name string) (string, error) {
	cur, rest, links, steps := "", name, 0, 0
	for rest != "" {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		switch c {
		case "", ".":
			continue
		case "..":
			if cur = path.Dir(cur); cur == "." {
				cur = ""
			}
			continue
		}
		if steps++; steps > maxSteps {
			return "", fmt.Errorf("a path of more than %d components", maxSteps)
		}
		next := path.Join(cur, c)
		st, err := root.Lstat(next)
		if err != nil {
			return "", err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("more than %d symbolic links", maxLinks)
		}
		target, err := root.Readlink(next)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = ""
		}
		rest = target + "/" + rest
	}
	return cur, nil
}

func (db *userDB) loadPasswd() error {
	if db.loaded[0] {
		return nil
	}
	db.loaded[0] = true
	return readDB(db.rootfs, "etc/passwd", func(f []string) {
		if len(f) < 4 {
			return
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 == nil && err2 == nil {
			db.passwd = append(db.passwd, passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid)})
		}
	})
}

func (db *userDB) loadGroup() error {
	if db.loaded[1] {
		return nil
	}
	db.loaded[1] = true
	return readDB(db.rootfs, "etc/group", func(f []string) {
		if len(f) < 3 {
			return
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return
		}
		g := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 && f[3] != "" {
			g.members = strings.Split(f[3], ",")
		}
		db.group = append(db.group, g)
	})
}

func (db *userDB) userByName(name string) (passwdEntry, bool, error) {
	if err := db.loadPasswd(); err != nil {
		return passwdEntry{}, false, err
	}
	for _, e := range db.passwd {
		if e.name == name {
			return e, true, nil
		}
	}
	return passwdEntry{}, false, nil
}

func (db *userDB) userByUID(uid uint32) (passwdEntry, bool, error) {
	if err := db.loadPasswd(); err != nil {
		return passwdEntry{}, false, err
	}
	for _, e := range db.passwd {
		if e.uid == uid {
			return e, true, nil
		}
	}
	return passwdEntry{}, false, nil
}

func (db *userDB) groupByName(name string) (groupEntry, bool, error) {
	if err := db.loadGroup(); err != nil {
		return groupEntry{}, false, err
	}
	for _, g := range db.group {
		if g.name == name {
			return g, true, nil
		}
	}
	return groupEntry{}, false, nil
}

// groupsOf lists the gids of groups that name user as a member, besides
// its primary group, in file order.
func (db *userDB) groupsOf(user string, primary uint32) ([]uint32, error) {
	if err := db.loadGroup(); err != nil {
		return nil, err
	}
	var out []uint32
	seen := map[uint32]bool{primary: true}
	for _, g := range db.group {
		for _, m := range g.members {
			if m == user && !seen[g.gid] {
				seen[g.gid] = true
				out = append(out, g.gid)
			}
		}
	}
	return out, nil
}
