//go:build unix

package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteHonoursUmask(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		umask int
		perm  fs.FileMode
		want  fs.FileMode
	}{
		{0o022, 0o644, 0o644},
		{0o077, 0o644, 0o600},
		{0o022, 0o600, 0o600},
	} {
		old := syscall.Umask(tc.umask)
		path := filepath.Join(dir, "f")
		err := Write(path, []byte("new\n"), tc.perm)
		syscall.Umask(old)
		require.NoError(t, err)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, tc.want, fi.Mode().Perm(), "umask %03o perm %03o", tc.umask, tc.perm)
	}
}

func TestWriteFailureKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(path, []byte("old\n"), 0o600))
	boom := errors.New("boom")
	err := WriteFunc(path, 0o600, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "old\n", string(b))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "the temporary file is removed")

	require.NoError(t, Write(path, []byte("new\n"), 0o600))
	b, _ = os.ReadFile(path)
	assert.Equal(t, "new\n", string(b))
	entries, _ = os.ReadDir(dir)
	assert.Len(t, entries, 1)
}
