package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEmulatorStateSaveFailureIsAnError: a sync on --emulator FILE whose state cannot
// be written must fail loudly rather than report success for changes that were lost;
// the changes were made, so the exit code is 3.
// Nothing can create files under /proc, not even root, so the save fails there.
func TestEmulatorStateSaveFailureIsAnError(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n"), 0o644))
	state := "/proc/cbk-sync-test-state.json"

	streams, _, errOut := TestStreams("", nil)
	require.Equal(t, exitOK, run(context.Background(), []string{"plan", "-f", cfg, "--emulator", state, "--emulator-init"}, streams), errOut.String())

	streams, _, errOut = TestStreams("", nil)
	require.Equal(t, exitPartial, run(context.Background(), []string{"sync", "-f", cfg, "--emulator", state, "--emulator-init", "--yes"}, streams))
	assert.Contains(t, errOut.String(), "the changes were made but could not be saved")
}
