package source

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// OpenRegular opens a local file of images (a layout's or a store's blob,
// an archive, an index.json) for reading without following a final
// symbolic link, and refuses anything but a regular file: a planted
// symlink cannot send the read elsewhere, and a FIFO or device in place
// of a blob cannot make the reader hang or read a device. O_NONBLOCK
// keeps the open of a FIFO from blocking before it is refused. The errors
// are kind invalid_argument; a missing file's wraps fs.ErrNotExist.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s is a symlink", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s is not a regular file", path)
	}
	return f, nil
}
