package apply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ocifetch/ocifetch/apply"
)

// Apply one uncompressed layer; its report carries the diffID it hashed.
func ExampleApplyLayer() {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
	tw.Write([]byte("demo\n"))
	tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()

	target, _ := os.MkdirTemp("", "rootfs-")
	defer os.RemoveAll(target)
	_, err := apply.ApplyLayer(context.Background(), target, &layer)
	fmt.Println(err != nil) // the escaping entry is refused
	b, _ := os.ReadFile(filepath.Join(target, "etc", "hostname"))
	fmt.Printf("%s", b)
	// Output:
	// true
	// demo
}
