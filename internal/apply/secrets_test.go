package apply_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

func record(id string) apply.SecretRecord {
	return apply.SecretRecord{Email: "a@x.test", UserID: "u1", TokenName: "ci", TokenID: id,
		Token: state.Secret("sk-" + id + "-value"), CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

func TestSecretsFileIsCreated0600AndAppendedTo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.jsonl")
	s, err := apply.OpenSecretsFile(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Deliver(record("t1")))
	require.NoError(t, s.Close())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	s, err = apply.OpenSecretsFile(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Deliver(record("t2")))
	require.NoError(t, s.Close())
	assert.Error(t, s.Deliver(record("t3")), "deliver after close")

	lines := readLines(t, path)
	require.Len(t, lines, 2)
	assert.Equal(t, map[string]any{
		"email": "a@x.test", "user_id": "u1", "token_name": "ci", "token_id": "t1",
		"token": "sk-t1-value", "created_at": "2025-01-02T03:04:05Z",
	}, lines[0])
	assert.Equal(t, "sk-t2-value", lines[1]["token"])
}

func TestSecretsFileReadableByOthersIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.jsonl")
	require.NoError(t, os.WriteFile(path, []byte("keep\n"), 0o600))
	require.NoError(t, os.Chmod(path, 0o644))
	_, err := apply.OpenSecretsFile(path, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), "chmod 600 "+path)
	b, _ := os.ReadFile(path)
	assert.Equal(t, "keep\n", string(b), "the refused file is left alone")

	require.NoError(t, os.Chmod(path, 0o400|0o200))
	s, err := apply.OpenSecretsFile(path, nil)
	require.NoError(t, err, "0600 is accepted")
	require.NoError(t, s.Close())
}

func TestSecretsToStdout(t *testing.T) {
	var out bytes.Buffer
	s, err := apply.OpenSecretsFile("-", &out)
	require.NoError(t, err)
	require.NoError(t, s.Deliver(record("t1")))
	require.NoError(t, s.Deliver(record("t2")))
	require.NoError(t, s.Close())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 2)
	assert.Contains(t, lines[0], `"token":"sk-t1-value"`)
}

func TestSecretRecordRedactsItselfOutsideTheSink(t *testing.T) {
	b, err := json.Marshal(record("t1"))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "sk-t1-value")
}
