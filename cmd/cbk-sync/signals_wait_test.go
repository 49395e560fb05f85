//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Issue 20: SIGTERM ends a run within the grace period in every state where it waits
// on something outside it. Each case below puts the real binary in one such state
// (an answer that never comes, a window of an hour, a pause of an hour), waits until
// the run is there (a log line, or the server holding the call), sends SIGTERM once,
// and asserts the exit code and that the run ended within the grace period plus
// signalSlack, where the state itself would have lasted an hour. (Reading the
// configuration from stdin and a blocked stdout sink: signals_test.go.)

// signalGrace is the runs' --interrupt-grace; signalSlack what a loaded machine may
// add to end the run after it (write the report, release the lock, exit): less than
// the 10 s after which a run that outlived the grace period is made to exit.
const (
	signalGrace = time.Second
	signalSlack = 8 * time.Second
)

// watchWriter keeps what a run writes and tells when a substring first appears.
type watchWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
	once  sync.Once
}

func newWatchWriter(want string) *watchWriter {
	return &watchWriter{want: want, found: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if w.want != "" && strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.found) })
	}
	return n, err
}

// wait waits until the substring appeared; a run that never writes it within
// hangBound fails the test (a bound against a hang, not a synchronisation).
func (w *watchWriter) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.found:
	case <-time.After(hangBound):
		t.Fatalf("the run never wrote %q:\n%s", w.want, w.String())
	}
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// holdRule holds (or throttles) the requests of one method whose path has a suffix,
// after the first skip of them.
type holdRule struct {
	method, suffix string
	skip           int
	retryAfter     string // not "": answer 429 with this Retry-After instead of holding
	seen           int
	held           chan struct{} // closed when the first one is held
	once           sync.Once
}

func hold(method, suffix string, skip int) *holdRule {
	return &holdRule{method: method, suffix: suffix, skip: skip, held: make(chan struct{})}
}

func throttleAfter(method, suffix string, skip int, retryAfter string) *holdRule {
	r := hold(method, suffix, skip)
	r.retryAfter = retryAfter
	return r
}

// holdingServer serves an emulator, but holds the requests a rule matches until
// their client gives up (or the test ends), and tells when the first one is held.
type holdingServer struct {
	emu   *emulator.Emulator
	mu    sync.Mutex
	rules []*holdRule
	done  chan struct{}
}

func (s *holdingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var match *holdRule
	for _, rule := range s.rules {
		if r.Method == rule.method && strings.HasSuffix(r.URL.Path, rule.suffix) {
			if rule.seen++; rule.seen > rule.skip {
				match = rule
			}
			break
		}
	}
	s.mu.Unlock()
	if match == nil {
		s.emu.ServeHTTP(w, r)
		return
	}
	match.once.Do(func() { close(match.held) })
	if match.retryAfter != "" {
		w.Header().Set("Retry-After", match.retryAfter)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"message":"Too many requests","code":"TOO_MANY_REQUESTS"}`))
		return
	}
	select {
	case <-r.Context().Done():
	case <-s.done:
	}
}

// startHoldingServer seeds users u1, u2 of acme with a token ci each (as signalsConfig
// declares them) when seeded, and serves them over HTTP on loopback.
func startHoldingServer(t *testing.T, seeded bool, rules ...*holdRule) (env []string, s *holdingServer) {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := "sk-" + hex.EncodeToString(b)
	e, err := emulator.New(emulator.Options{Token: token})
	require.NoError(t, err)
	if seeded {
		owned := state.Some(state.Meta{"cbkSyncOwner": "acme"})
		for _, email := range []string{"u1@acme.test", "u2@acme.test"} {
			u, err := e.PutUser(state.User{Email: state.Some(email), Meta: owned})
			require.NoError(t, err)
			_, err = e.PutToken(u.ID, state.Token{Name: state.Some("ci"), Meta: owned})
			require.NoError(t, err)
		}
	}
	s = &holdingServer{emu: e, rules: rules, done: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: s}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		close(s.done)
		_ = hs.Shutdown(context.Background())
	})
	return []string{"CHATBOTKIT_API_URL=http://" + ln.Addr().String(), "CHATBOTKIT_API_TOKEN=" + token}, s
}

// sigtermWithin sends SIGTERM to run and asserts that it exits with code within the
// grace period (and signalSlack); it returns the run's output.
func sigtermWithin(t *testing.T, run *signalRun, out *watchWriter, code int) string {
	t.Helper()
	t0 := time.Now()
	run.signal(syscall.SIGTERM)
	got := run.end()
	took := time.Since(t0)
	t.Logf("exit %d %s after SIGTERM", got, took.Round(time.Millisecond))
	assert.Equal(t, code, got, out.String())
	assert.Less(t, took, signalGrace+signalSlack, "the run outlived its grace period:\n%s", out.String())
	assert.NotContains(t, out.String(), "exiting now", "one SIGTERM: the run ended by itself, not by the forced exit of a second")
	return out.String()
}

func startWatched(t *testing.T, dir string, env []string, want string, args ...string) (*signalRun, *watchWriter) {
	t.Helper()
	w := newWatchWriter(want)
	run := startRun(t, dir, env, func(c *exec.Cmd) { c.Stdout, c.Stderr = w, w }, args...)
	return run, w
}

func writeSignalsConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(signalsConfig), 0o644))
	return dir
}

// A plan waiting for the poll window (a budget of one poll an hour: the second token
// list waits) ends at SIGTERM: exit 1, nothing changed.
func TestSigtermWhileWaitingForThePollWindow(t *testing.T) {
	dir := writeSignalsConfig(t)
	env, _ := startHoldingServer(t, true)
	run, out := startWatched(t, dir, env, "poll budget reached: waiting for the window to slide",
		"plan", "-f", "config.yaml", "--poll-budget", "2", "--poll-window", "1h", "--interrupt-grace", signalGrace.String())
	out.wait(t)
	text := sigtermWithin(t, run, out, exitError)
	// (the read cut short is the waiting token list, or the user fetch beside it)
	assert.Regexp(t, `error: reading the remote state: .*: interrupted \(terminated\)\n`, text, "said as an interrupt, not \"context canceled\"")
}

// A plan whose read met a 429 asking for an hour (Retry-After: 3600, within a
// --retry-timeout of an hour: the pause is capped at five minutes) ends at SIGTERM:
// exit 1.
func TestSigtermWhilePausedByRetryAfterInAPlan(t *testing.T) {
	dir := writeSignalsConfig(t)
	env, _ := startHoldingServer(t, true, throttleAfter("GET", "/token/list", 0, "3600"))
	run, out := startWatched(t, dir, env, "api retry",
		"plan", "-f", "config.yaml", "--retry-timeout", "1h", "--interrupt-grace", signalGrace.String())
	out.wait(t)
	text := sigtermWithin(t, run, out, exitError)
	assert.Contains(t, text, "interrupted (terminated)")
}

// A sync whose apply met a 429 asking for an hour ends at SIGTERM (the case:
// "Apply interrupted" was printed and the run waited for the hour in its lock's
// release): exit 3, the report written.
func TestSigtermWhilePausedByRetryAfterInAnApply(t *testing.T) {
	dir := writeSignalsConfig(t)
	// The first user create is the lock's lease; the planned ones are throttled.
	env, _ := startHoldingServer(t, false, throttleAfter("POST", "/user/create", 1, "3600"))
	run, out := startWatched(t, dir, env, "api retry",
		"sync", "-f", "config.yaml", "--yes", "--parallelism", "1", "--secrets-out", "secrets.jsonl", "--report", "report.json",
		"--retry-timeout", "1h", "--interrupt-grace", signalGrace.String())
	out.wait(t)
	text := sigtermWithin(t, run, out, exitPartial)
	assert.Contains(t, text, "Apply interrupted")
	rep, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	assert.Contains(t, string(rep), `"interrupted": true`)
}

// A sync whose lock renewal gets no answer (and whose apply waits on a create that
// gets none either) ends at SIGTERM: exit 3.
func TestSigtermWhileRenewingTheLock(t *testing.T) {
	dir := writeSignalsConfig(t)
	// The lease is the first user create; the first planned one is held, and so is
	// every user update: the only ones are the lock's renewals (every 200 ms at a
	// TTL of 600 ms).
	renewal := hold("POST", "/update", 0)
	env, _ := startHoldingServer(t, false, renewal, hold("POST", "/user/create", 1))
	run, out := startWatched(t, dir, env, "",
		"sync", "-f", "config.yaml", "--yes", "--parallelism", "1", "--secrets-out", "secrets.jsonl", "--report", "report.json",
		"--lock-ttl", "600ms", "--interrupt-grace", signalGrace.String())
	<-renewal.held
	sigtermWithin(t, run, out, exitPartial)
}

// A sync whose apply is done and whose lock release gets no answer ends at SIGTERM
// within the grace period of a call in flight (it waited for a second interrupt, and
// was ended by the forced exit 10 s after the grace period): every change was made,
// the lease is left to expire (it says so), exit 0, as for any failed release.
func TestSigtermWhileReleasingTheLock(t *testing.T) {
	dir := writeSignalsConfig(t)
	release := hold("POST", "/delete", 0)
	env, _ := startHoldingServer(t, false, release)
	run, out := startWatched(t, dir, env, "",
		"sync", "-f", "config.yaml", "--yes", "--secrets-out", "secrets.jsonl", "--report", "report.json",
		"--interrupt-grace", signalGrace.String())
	<-release.held
	text := sigtermWithin(t, run, out, exitOK)
	assert.Contains(t, text, "Apply complete: 4 ok")
	assert.Contains(t, text, "releasing the lock on this account failed (it expires by itself within")
}

// A FIFO named *.yaml that nobody writes to: named with -f, reading it blocks, and
// SIGTERM ends the run at once, exit 1, saying so (issue 20: it ignored SIGINT and
// SIGTERM; signals_test.go sends SIGINT); in a configuration directory it is refused
// before anything is opened, so nothing waits.
func TestSigtermWhileReadingAFIFO(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	require.NoError(t, os.Mkdir(conf, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(conf, "a.yaml"), []byte(signalsConfig), 0o644))
	fifo := filepath.Join(conf, "b.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))

	run, out := startWatched(t, dir, nil, "", "plan", "-f", "conf", "--interrupt-grace", signalGrace.String())
	assert.Equal(t, exitError, run.end(), out.String())
	assert.Contains(t, out.String(), "conf/b.yaml: is a named pipe, socket or device, not a regular file")

	run, out = startWatched(t, dir, nil, "", "plan", "-f", "conf/b.yaml", "--interrupt-grace", signalGrace.String())
	// Opening a FIFO to write waits for its reader: once open, the run is reading it.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer w.Close()
	text := sigtermWithin(t, run, out, exitError)
	assert.Contains(t, text, "interrupted while reading the configuration")
}
