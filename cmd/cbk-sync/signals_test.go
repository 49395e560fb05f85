//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
)

// hangBound bounds a run of the real binary that these tests expect to end by itself:
// reaching it means the run hung (it is killed, and the test fails).
const hangBound = time.Minute

// signalRun is the real binary (testscript.Main puts it on PATH) started in dir.
type signalRun struct {
	t   *testing.T
	cmd *exec.Cmd
	out bytes.Buffer // stderr (and stdout unless the test takes it)
	err chan error
}

func startRun(t *testing.T, dir string, env []string, setup func(*exec.Cmd), args ...string) *signalRun {
	t.Helper()
	bin, err := exec.LookPath("cbk-sync")
	require.NoError(t, err, "the test binary puts cbk-sync on PATH (testscript.Main)")
	r := &signalRun{t: t, err: make(chan error, 1)}
	r.cmd = exec.Command(bin, args...)
	r.cmd.Dir = dir
	r.cmd.Env = append(os.Environ(), append([]string{"NO_COLOR=1", "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}, env...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if setup != nil {
		setup(r.cmd)
	}
	require.NoError(t, r.cmd.Start())
	go func() { r.err <- r.cmd.Wait() }()
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	return r
}

// end waits for the run to exit and returns its exit status; a run still going after
// hangBound is killed and fails the test.
func (r *signalRun) end() int {
	r.t.Helper()
	select {
	case err := <-r.err:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		require.NoError(r.t, err)
		return 0
	case <-time.After(hangBound):
		_ = r.cmd.Process.Kill()
		<-r.err
		r.t.Fatalf("the run did not end within %s of its interrupt:\n%s", hangBound, r.out.String())
		return -1
	}
}

func (r *signalRun) signal(sig os.Signal) { require.NoError(r.t, r.cmd.Process.Signal(sig)) }

const signalsConfig = `version: 1
owner: acme
users:
  - email: u1@acme.test
    tokens: [{name: ci}]
  - email: u2@acme.test
    tokens: [{name: ci}]
`

// An interrupt while the configuration is read from a pipe that never ends (-f -) or
// from a FIFO nobody writes to ends the run at once, exit 1, saying so (both used to
// ignore SIGINT and SIGTERM for good).
func TestInterruptWhileReadingTheConfiguration(t *testing.T) {
	t.Run("stdin", func(t *testing.T) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		defer w.Close()
		run := startRun(t, t.TempDir(), nil, func(c *exec.Cmd) { c.Stdin = r }, "plan", "-f", "-")
		// More than a pipe holds: once this write returns, the run has read from
		// stdin, so its signal handler is installed (it is, before anything is read).
		_, err = w.WriteString("# " + strings.Repeat("x", 128<<10) + "\nversion: 1\n")
		require.NoError(t, err)
		run.signal(syscall.SIGTERM)
		assert.Equal(t, exitError, run.end(), run.out.String())
		assert.Contains(t, run.out.String(), "error: interrupted while reading the configuration from stdin (-f -); nothing was read or changed remotely")
	})
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		fifo := filepath.Join(dir, "config.yaml")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		run := startRun(t, dir, nil, nil, "plan", "-f", fifo)
		// Opening a FIFO to write waits for its reader: once open, the run is reading.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		require.NoError(t, err)
		defer w.Close()
		run.signal(syscall.SIGINT)
		assert.Equal(t, exitError, run.end(), run.out.String())
		assert.Contains(t, run.out.String(), "error: interrupted while reading the configuration; nothing was read or changed remotely")
	})
}

// servedServer serves an emulator and tells when an operation was first answered.
type servedServer struct {
	emu    *emulator.Emulator
	op     string
	once   sync.Once
	served chan struct{}
}

func (s *servedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.emu.ServeHTTP(w, r)
	if strings.HasSuffix(r.URL.Path, s.op) {
		s.once.Do(func() { close(s.served) })
	}
}

// An interrupt while the secrets go to a stdout nobody reads (--secrets-out - into a
// full pipe) ends the run once the grace period is over: the blocked write is given
// up, its token is not kept as delivered, the report is written, exit 3 (the run used
// to wait for the reader for good).
func TestInterruptWhileStdoutSinkIsBlocked(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(signalsConfig), 0o644))
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := "sk-" + hex.EncodeToString(b)
	e, err := emulator.New(emulator.Options{Token: token})
	require.NoError(t, err)
	srv := &servedServer{emu: e, op: "/token/create", served: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: srv}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Shutdown(context.Background())

	// A pipe filled to the brim, which the test never reads: the first secret's write
	// blocks.
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	defer pw.Close()
	fd := int(pw.Fd())
	require.NoError(t, syscall.SetNonblock(fd, true))
	chunk := make([]byte, 4096)
	for {
		if _, err := syscall.Write(fd, chunk); err != nil {
			require.ErrorIs(t, err, syscall.EAGAIN)
			break
		}
	}
	require.NoError(t, syscall.SetNonblock(fd, false))

	env := []string{"CHATBOTKIT_API_URL=http://" + ln.Addr().String(), "CHATBOTKIT_API_TOKEN=" + token}
	run := startRun(t, dir, env, func(c *exec.Cmd) { c.Stdout = pw },
		"sync", "-f", "config.yaml", "--yes", "--parallelism", "1", "--secrets-out", "-", "--report", "report.json", "--interrupt-grace", "100ms")
	<-srv.served // the first token was created: its secret is being written
	run.signal(syscall.SIGTERM)
	code := run.end()
	out := run.out.String()
	assert.Equal(t, exitPartial, code, out)
	assert.Contains(t, out, "interrupted while the reader of stdout was not reading")
	assert.Contains(t, out, "Apply interrupted")
	assert.NotContains(t, out, "exiting now", "the run ended by itself, not by the forced exit")
	rep, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	assert.Contains(t, string(rep), `"interrupted": true`)
}

// A stdout whose reader has gone (`cbk-sync plan --help | head -1`) ends a command
// that changes nothing quietly, exit 0 (it printed "error: write /dev/stdout: broken
// pipe" and exited 1); a sync that would apply still says it stopped.
func TestClosedStdoutEndsQuietly(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(signalsConfig), 0o644))
	closedPipe := func(c *exec.Cmd) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		require.NoError(t, r.Close()) // the reader is gone before anything is written
		t.Cleanup(func() { w.Close() })
		c.Stdout = w
	}
	for _, args := range [][]string{
		{"plan", "--help"},
		{"help", "sync"},
		{"plan", "-f", "config.yaml", "--emulator", "state.json", "--emulator-init"},
		{"sync", "-f", "config.yaml", "--dry-run", "--emulator", "state.json", "--emulator-init"},
		{"schema"},
	} {
		run := startRun(t, dir, nil, closedPipe, args...)
		assert.Equal(t, exitOK, run.end(), "%v: %s", args, run.out.String())
		assert.Empty(t, run.out.String(), "%v", args)
	}
	run := startRun(t, dir, nil, closedPipe, "sync", "-f", "config.yaml", "--yes", "--emulator", "state.json", "--emulator-init")
	assert.Equal(t, exitError, run.end())
	assert.Contains(t, run.out.String(), "broken pipe")
	_, err := os.Stat(filepath.Join(dir, "state.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing was applied")
}
