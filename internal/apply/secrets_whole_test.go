//go:build linux

package apply

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

func bigRecord(id string) SecretRecord {
	return SecretRecord{Email: "a@x.test", UserID: "u1", TokenName: "ci", TokenID: id,
		Token: state.Secret("sk-" + strings.Repeat("ab", 600)), CreatedAt: time.Unix(0, 0)}
}

// wholeLines fails unless the file ends with a newline and each line is a record,
// and returns the token IDs in order. skip lines may be cut pieces of an older run.
func wholeLines(t *testing.T, path string, skip int) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	if len(b) == 0 {
		return nil
	}
	require.True(t, bytes.HasSuffix(b, []byte("\n")), "the file ends in the middle of a line")
	var ids []string
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if i < skip {
			continue
		}
		var rec struct {
			TokenID string `json:"token_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "line %d is not a record: %.60q", i+1, line)
		ids = append(ids, rec.TokenID)
	}
	return ids
}

// fillUntilFull delivers records until one fails, and returns the IDs delivered and
// the failure.
func fillUntilFull(t *testing.T, s *FileSink) ([]string, error) {
	var ok []string
	for i := range 1000 {
		id := fmt.Sprintf("t%03d", i)
		if err := s.Deliver(bigRecord(id)); err != nil {
			return ok, err
		}
		ok = append(ok, id)
	}
	t.Fatal("the disk never filled")
	return nil, nil
}

// TestSecretsFileFullDisk: a record that does not fit (ENOSPC on a small tmpfs) is cut
// off again, so the file holds whole records only and the next one starts a line.
func TestSecretsFileFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16k"); err != nil {
		t.Skipf("cannot mount a small tmpfs (%v); TestSecretsFileShortWrite injects the same fault", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	filler := filepath.Join(dir, "filler")
	require.NoError(t, os.WriteFile(filler, make([]byte, 8<<10), 0o600))
	path := filepath.Join(dir, "secrets.jsonl")
	s, err := OpenSecretsFile(path, nil)
	require.NoError(t, err)
	ok, err := fillUntilFull(t, s)
	require.ErrorIs(t, err, syscall.ENOSPC)
	assert.Equal(t, ok, wholeLines(t, path, 0), "exactly the records delivered, whole")

	require.NoError(t, os.Remove(filler))
	require.NoError(t, s.Deliver(bigRecord("after")))
	require.NoError(t, s.Close())
	assert.Equal(t, append(ok, "after"), wholeLines(t, path, 0))
}

// TestSecretsFileShortWrite is TestSecretsFileFullDisk with the fault injected: the
// write stops halfway with ENOSPC.
func TestSecretsFileShortWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.jsonl")
	s, err := OpenSecretsFile(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Deliver(bigRecord("t1")))
	s.write = func(b []byte) (int, error) {
		n, _ := s.f.Write(b[:len(b)/2])
		return n, syscall.ENOSPC
	}
	require.ErrorIs(t, s.Deliver(bigRecord("t2")), syscall.ENOSPC)
	assert.Equal(t, []string{"t1"}, wholeLines(t, path, 0))
	s.write = s.f.Write
	require.NoError(t, s.Deliver(bigRecord("t3")))
	require.NoError(t, s.Close())
	assert.Equal(t, []string{"t1", "t3"}, wholeLines(t, path, 0))
}

// TestSecretsFileCutLineRepairedOnOpen: a file an older run left with a cut last line
// gets its newline before the first record, so that record is whole.
func TestSecretsFileCutLineRepairedOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(`{"token_id":"t0"}`+"\n"+`{"email":"a@x.test","tok`), 0o600))
	s, err := OpenSecretsFile(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Deliver(bigRecord("t1")))
	require.NoError(t, s.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, `{"email":"a@x.test","tok`, lines[1], "the piece stays, alone on its line")
	assert.Equal(t, []string{"t1"}, wholeLines(t, path, 2))
}

// TestSecretsFileDeletedOrReplaced: a record written to a file that is no longer at
// its path is not delivered.
func TestSecretsFileDeletedOrReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.jsonl")
	s, err := OpenSecretsFile(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Deliver(bigRecord("t1")))
	require.NoError(t, os.Remove(path))
	err = s.Deliver(bigRecord("t2"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "deleted or replaced")
	require.NoError(t, s.Close())

	s, err = OpenSecretsFile(path, nil)
	require.NoError(t, err)
	other := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	require.NoError(t, os.Rename(other, path))
	err = s.Deliver(bigRecord("t3"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "deleted or replaced")
	require.NoError(t, s.Close())
}

// TestSinksOwnedByAnotherUserRefused: an existing secrets file or age directory of
// another user is refused, whatever its mode.
func TestSinksOwnedByAnotherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.jsonl")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	require.NoError(t, os.Chown(path, 12345, 12345))
	_, err := OpenSecretsFile(path, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "owned by uid 12345")

	ageDir := filepath.Join(dir, "age")
	require.NoError(t, os.Mkdir(ageDir, 0o700))
	require.NoError(t, os.Chown(ageDir, 12345, 12345))
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	_, err = OpenAgeDir(ageDir, []age.Recipient{id.Recipient()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "owned by uid 12345")
}
