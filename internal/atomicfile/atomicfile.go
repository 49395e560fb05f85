// Package atomicfile writes whole files so that a reader, or the next run after a
// crash, sees either the old file or the new one, never half of one.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data (see WriteFunc).
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc replaces path with what write writes: into a temporary file beside it,
// created with perm as the user's umask allows (the temporary file is the final one,
// so the umask applies exactly as it does for a plain create), synced, renamed over
// path, and the directory synced so the rename survives a crash. On any error path is
// untouched and the temporary file is removed. The parent directory must exist.
//
// os.CreateTemp is not used because it always creates mode 0600 and a later Chmod
// would ignore the umask; the standard library has no helper that syncs the directory.
func WriteFunc(path string, perm fs.FileMode, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := createTemp(dir, "."+filepath.Base(path)+".tmp-", perm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir syncs a directory so that a rename or create in it is durable. Platforms
// that cannot sync a directory (EINVAL, ENOTSUP) are not an error: the data itself is
// already synced.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !isUnsupported(err) {
		return err
	}
	return nil
}

func createTemp(dir, prefix string, perm fs.FileMode) (*os.File, error) {
	for range 100 {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		name := filepath.Join(dir, prefix+hex.EncodeToString(b))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, errors.New("atomicfile: cannot find a free temporary file name in " + dir)
}
