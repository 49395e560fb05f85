package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maxRSSUnderBombs is the peak resident memory a run against gzip bombs may reach
// (the bound; the binary under test is built with -race, which adds to it).
const maxRSSUnderBombs = 400 << 20

// A plan at --parallelism 32 whose every token list is a gzip bomb (80 KiB on the
// wire, 80 MiB inflated) stays under 400 MiB of peak RSS, measured by the kernel for
// the real binary: no answer is inflated (3.2 GiB before, each bomb read to the 64
// MiB cap on every connection, then retried). The figure is logged.
func TestGzipBombsKeepMemoryBounded(t *testing.T) {
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	chunk := bytes.Repeat([]byte(" "), 1<<20)
	for range 80 {
		_, err := zw.Write(chunk)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	bomb := zb.Bytes()

	const users = 64
	var items, cfg strings.Builder
	cfg.WriteString("version: 1\nowner: acme\nusers:\n")
	for i := range users {
		if i > 0 {
			items.WriteByte(',')
		}
		fmt.Fprintf(&items, `{"id":"u%d","email":"u%d@acme.test","meta":{"cbkSyncOwner":"acme"},"createdAt":1}`, i, i)
		fmt.Fprintf(&cfg, "  - email: u%d@acme.test\n    tokens: [{name: ci}]\n", i)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/user/list") {
			fmt.Fprintf(w, `{"items":[%s]}`, items.String())
			return
		}
		// Sent whatever the client asked for, as a hostile proxy would.
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(bomb)
	}))
	defer srv.Close()

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg.String()), 0o644))
	env := []string{"CHATBOTKIT_API_URL=" + srv.URL, "CHATBOTKIT_API_TOKEN=sk-test-memory"}
	run := startRun(t, dir, env, nil, "plan", "-f", "config.yaml", "--parallelism", "32", "--listing", "paged",
		"--api-paths", "partner", "--retry-timeout", "3s", "--retry-base", "1ms")
	code := run.end()
	out := run.out.String()
	assert.Equal(t, exitError, code, out)
	assert.Contains(t, out, "the answer is compressed")
	ru, ok := run.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	require.True(t, ok)
	peak := ru.Maxrss << 10 // KiB on Linux
	t.Logf("peak RSS of a --parallelism 32 plan against gzip bombs: %d MiB", peak>>20)
	assert.Less(t, peak, int64(maxRSSUnderBombs), "peak RSS %d MiB", peak>>20)
}
