//go:build unix

package config

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A FIFO named *.yaml in a configuration directory is refused at once, naming it,
// instead of waiting for a writer that never comes (it used to hang the run).
func TestDirectoryFIFOIsRefused(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("version: 1\nowner: acme\nusers: []\n"), 0o644))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "b.yaml"), 0o644))
	done := make(chan error, 1)
	go func() {
		_, err := Load([]string{dir}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), filepath.Join(dir, "b.yaml")+": is a named pipe, socket or device, not a regular file")
	case <-time.After(30 * time.Second): // a bound against the hang, not a synchronisation
		t.Fatal("Load waited for a writer of the FIFO")
	}
}
