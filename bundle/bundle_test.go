package bundle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocifetch/ocifetch/bundle"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/specschema"
)

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
demo:x:1000:1000::/home/demo:/bin/sh
`

const group = `root:x:0:
wheel:x:10:demo,root
audio:x:29:demo
demo:x:1000:
`

// rootfs makes a root filesystem with the given /etc files.
func rootfs(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestUserResolution(t *testing.T) {
	t.Parallel()
	dir := rootfs(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	tests := []struct {
		user     string
		uid, gid uint32
		extra    []uint32
		kind     errdefs.Kind
	}{
		{user: "", uid: 0, gid: 0, extra: []uint32{10}},
		{user: "root", uid: 0, gid: 0, extra: []uint32{10}},
		{user: "demo", uid: 1000, gid: 1000, extra: []uint32{10, 29}},
		{user: "1000", uid: 1000, gid: 1000, extra: []uint32{10, 29}},
		{user: "demo:audio", uid: 1000, gid: 29},
		{user: "demo:0", uid: 1000, gid: 0},
		{user: "1000:10", uid: 1000, gid: 10},
		{user: "4242", uid: 4242, gid: 0},
		{user: "4242:4343", uid: 4242, gid: 4343},
		{user: "nobody", kind: errdefs.ErrNotFound},
		{user: "demo:nogroup", kind: errdefs.ErrNotFound},
		{user: ":", kind: errdefs.ErrManifestInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			img := ocispec.Image{Config: ocispec.ImageConfig{User: tt.user}}
			s, err := bundle.Spec(context.Background(), img, dir)
			if tt.kind != "" {
				if errdefs.KindOf(err) != tt.kind {
					t.Fatalf("error %v, want kind %s", err, tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := s.Process.User
			if u.UID != tt.uid || u.GID != tt.gid || !equalGids(u.AdditionalGids, tt.extra) {
				t.Fatalf("user %+v, want uid %d gid %d extra %v", u, tt.uid, tt.gid, tt.extra)
			}
		})
	}
}

func equalGids(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConversion(t *testing.T) {
	t.Parallel()
	dir := rootfs(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	img := ocispec.Image{
		Created: &created, Author: "someone",
		Platform: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		Config: ocispec.ImageConfig{
			User: "demo", Entrypoint: []string{"/bin/entry", "-x"}, Cmd: []string{"serve"},
			Env: []string{"A=1", "PATH=/bin"}, WorkingDir: "/srv", StopSignal: "SIGQUIT",
			ExposedPorts: map[string]struct{}{"80/tcp": {}, "443/tcp": {}},
			Labels:       map[string]string{"com.example": "x", "org.opencontainers.image.os": "lies"},
		},
	}
	s, err := bundle.Spec(context.Background(), img, dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Process.Args, " ") != "/bin/entry -x serve" || s.Process.Cwd != "/srv" ||
		strings.Join(s.Process.Env, ",") != "A=1,PATH=/bin" || s.Root.Path != "rootfs" {
		t.Fatalf("process %+v root %+v", s.Process, s.Root)
	}
	want := map[string]string{
		"com.example":                           "x",
		"org.opencontainers.image.os":           "linux", // the field wins over the label
		"org.opencontainers.image.architecture": "arm64",
		"org.opencontainers.image.variant":      "v8",
		"org.opencontainers.image.author":       "someone",
		"org.opencontainers.image.created":      "2026-01-02T03:04:05Z",
		"org.opencontainers.image.stopSignal":   "SIGQUIT",
		"org.opencontainers.image.exposedPorts": "443/tcp,80/tcp",
	}
	if len(s.Annotations) != len(want) {
		t.Fatalf("annotations %v, want %v", s.Annotations, want)
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Fatalf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	// Cmd alone when there is no entrypoint; cwd defaults to /.
	s, _ = bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}}}, dir)
	if strings.Join(s.Process.Args, " ") != "sh" || s.Process.Cwd != "/" {
		t.Fatalf("args %v cwd %q", s.Process.Args, s.Process.Cwd)
	}
}

// The image's /etc/passwd is read confined: a symlink to a host file leads
// to the image's own path of that name (here none: the user is not
// found), never to the host's file; a FIFO is not opened (it would hang).
func TestUserLookupIsConfined(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "host-passwd")
	os.WriteFile(secret, []byte("demo:x:7:7::/:/bin/sh\n"), 0o644)

	link := rootfs(t, nil)
	if err := os.Symlink(secret, filepath.Join(link, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	s, err := bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{User: "demo"}}, link)
	if errdefs.KindOf(err) != errdefs.ErrNotFound || (s != nil && s.Process != nil && s.Process.User.UID == 7) {
		t.Fatalf("symlinked passwd: %v", err)
	}

	fifo := rootfs(t, nil)
	if err := syscall.Mkfifo(filepath.Join(fifo, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{User: "demo"}}, fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if errdefs.KindOf(err) != errdefs.ErrPathEscape {
			t.Fatalf("FIFO passwd: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO /etc/passwd hung")
	}
}

// /etc/passwd and /etc/group linked elsewhere inside the image, as images
// built by Nix link them into /nix/store, are followed inside the root:
// the user resolves. Before, any link was refused as path_escape (exit 5,
// "unsafe content"), so bundle failed on such images whatever their user.
// A loop of links and a link to a FIFO are still refused, without hanging.
func TestUserLookupFollowsLinksInsideTheRoot(t *testing.T) {
	t.Parallel()
	dir := rootfs(t, nil)
	for name, body := range map[string]string{"nix/store/abc-nss/etc/passwd": passwd, "usr/lib/group": group} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	os.Symlink("/nix/store/abc-nss/etc/passwd", filepath.Join(dir, "etc/passwd"))
	os.Symlink("../../../usr/lib/group-link", filepath.Join(dir, "etc/group")) // ".." stops at the root
	os.Symlink("group", filepath.Join(dir, "usr/lib/group-link"))
	s, err := bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{User: "demo"}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if u := s.Process.User; u.UID != 1000 || u.GID != 1000 || len(u.AdditionalGids) != 2 {
		t.Errorf("user %+v, want 1000:1000 in groups 10 and 29", u)
	}

	loop := rootfs(t, nil)
	os.Symlink("passwd2", filepath.Join(loop, "etc/passwd"))
	os.Symlink("passwd", filepath.Join(loop, "etc/passwd2"))
	if _, err := bundle.Spec(context.Background(), ocispec.Image{}, loop); errdefs.KindOf(err) != errdefs.ErrPathEscape {
		t.Errorf("a loop of links: %v", err)
	}

	fifo := rootfs(t, nil)
	syscall.Mkfifo(filepath.Join(fifo, "etc/fifo"), 0o644)
	os.Symlink("/etc/fifo", filepath.Join(fifo, "etc/passwd"))
	done := make(chan error, 1)
	go func() {
		_, err := bundle.Spec(context.Background(), ocispec.Image{}, fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if errdefs.KindOf(err) != errdefs.ErrPathEscape {
			t.Errorf("a link to a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO through a link hung")
	}
}

// ".." in a link's target is taken from the directory reached, as the
// kernel takes it, not from the names written: with etc/conf linked to
// /nix/store/abc/etc/conf, /etc/passwd -> conf/../passwd is the store's
// passwd. Before, the target was cleaned by name to /etc/passwd itself,
// and bundle refused a valid image as a loop of links (path_escape).
func TestUserLookupTakesDotDotAfterALink(t *testing.T) {
	t.Parallel()
	dir := rootfs(t, nil)
	os.MkdirAll(filepath.Join(dir, "nix/store/abc/etc/conf"), 0o755)
	os.WriteFile(filepath.Join(dir, "nix/store/abc/etc/passwd"), []byte(passwd), 0o644)
	os.Symlink("/nix/store/abc/etc/conf", filepath.Join(dir, "etc/conf"))
	os.Symlink("conf/../passwd", filepath.Join(dir, "etc/passwd"))
	s, err := bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{User: "demo"}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if u := s.Process.User; u.UID != 1000 || u.GID != 1000 {
		t.Errorf("user %+v, want 1000:1000", u)
	}
	// A missing directory on the way is a missing file (the user is not
	// found), not a way around it by "..".
	gone := rootfs(t, map[string]string{"etc/passwd2": passwd})
	os.Remove(filepath.Join(gone, "etc/passwd"))
	os.Symlink("missing/../passwd2", filepath.Join(gone, "etc/passwd"))
	if _, err := bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{User: "demo"}}, gone); errdefs.KindOf(err) != errdefs.ErrNotFound {
		t.Errorf("through a missing directory: %v", err)
	}
	// Links that each go 300 directories down and back up: every
	// component is looked up from the root, so the walk is bounded.
	deep := rootfs(t, map[string]string{"passwd.real": passwd})
	down := strings.Repeat("d/", 300)
	os.MkdirAll(filepath.Join(deep, down), 0o755)
	os.Symlink("/l1", filepath.Join(deep, "etc/passwd"))
	for i := 1; i <= 4; i++ {
		next := fmt.Sprintf("l%d", i+1)
		if i == 4 {
			next = "passwd.real"
		}
		os.Symlink("/"+down+strings.Repeat("../", 300)+next, filepath.Join(deep, fmt.Sprintf("l%d", i)))
	}
	if _, err := bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{User: "demo"}}, deep); errdefs.KindOf(err) != errdefs.ErrPathEscape {
		t.Errorf("1,200 components: %v", err)
	}
}

// The config.json written validates against the runtime-spec JSON schema.
func TestConfigValidatesAgainstRuntimeSpecSchema(t *testing.T) {
	t.Parallel()
	dir := rootfs(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	s, err := bundle.Spec(context.Background(), ocispec.Image{Config: ocispec.ImageConfig{User: "demo", Cmd: []string{"sh"}}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := bundle.Write(out, s); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(out, "config.json"))
	if err := validateConfig(t, data); err != nil {
		t.Fatalf("config.json does not validate: %v", err)
	}
	// The check can fail: a config with a malformed process does not pass.
	bad := strings.Replace(string(data), `"cwd": "/"`, `"cwd": 42`, 1)
	if bad == string(data) || validateConfig(t, []byte(bad)) == nil {
		t.Fatal("a malformed config.json validated")
	}
	var back rspec.Spec
	if err := json.Unmarshal(data, &back); err != nil || back.Process.User.UID != 1000 {
		t.Fatalf("round trip: %v %+v", err, back.Process)
	}
}

func validateConfig(t *testing.T, data []byte) error {
	t.Helper()
	return specschema.ValidateRuntimeConfig(data)
}
