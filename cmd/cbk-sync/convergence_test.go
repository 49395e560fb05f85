package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// convergenceConfig declares 12 users with tokens; the remote state starts with some
// of them drifted, plus users cbk-sync must never touch.
const convergenceConfig = `version: 1
owner: acme
prune: { users: true }
users:
%s`

func convergenceUsers() string {
	var b strings.Builder
	for i := range 12 {
		fmt.Fprintf(&b, "  - email: u%02d@acme.test\n    name: User %d\n    meta: { team: t%d }\n    tokens:\n      - name: ci\n        description: CI\n      - name: deploy\n        rotateAfter: 720h\n", i, i, i%3)
	}
	return b.String()
}

// TestConvergenceUnderFaults runs sync against an emulator that fails 10% of requests
// with 5xx, throttles 5% with 429 and loses 3% of answers, over 20 seeds. During the
// first run a concurrent writer also deletes the last item of 20% of the list pages
// right after serving them (users and tokens, declared or not: someone else's
// deletes), which on the platform ends a listing early; pages are 2 items (paged for
// even seeds, JSONL streams paging internally for odd ones), so every listing
// crosses pages. After at most two more runs without the writer the remote state
// must equal the desired one, nothing may be duplicated, every live owned token's
// secret must be in the sink exactly once, unmanaged and foreign users must be
// untouched unless the writer deleted them, and a final plan must be empty.
func TestConvergenceUnderFaults(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 3
	}
	deletes := 0
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { deletes += convergeOnce(t, int64(seed)) })
	}
	require.GreaterOrEqual(t, deletes, seeds, "the writer deleted too little: the test would prove little")
}

// convergeOnce runs one seed and returns the number of items the writer deleted.
func convergeOnce(t *testing.T, seed int64) int {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(convergenceConfig, convergenceUsers())), 0o644))
	sink := filepath.Join(dir, "secrets.jsonl")

	const token = "sk-convergence-test-token"
	e, err := emulator.New(emulator.Options{Token: token, StreamPageSize: 2})
	require.NoError(t, err)
	// Drift: some declared users exist (owned, with an old token to rotate, an
	// undeclared owned token to revoke), one is unmanaged (adopted), one owned user is
	// not declared (pruned); a foreign and an unmanaged undeclared user must not change.
	// These come first in the listing, so that a listing cut short misses declared users.
	_, err = e.PutUser(state.User{Email: state.Some("gone@acme.test"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
	require.NoError(t, err)
	foreign, err := e.PutUser(state.User{Email: state.Some("f@other.test"), Name: state.Some("F"), Meta: state.Some(state.Meta{state.OwnerKey: "other"})})
	require.NoError(t, err)
	unmanaged, err := e.PutUser(state.User{Email: state.Some("hand@acme.test"), Name: state.Some("H"), Meta: state.Null[state.Meta]()})
	require.NoError(t, err)
	for i := range 6 {
		meta := state.Meta{state.OwnerKey: "acme"}
		if i == 5 {
			meta = state.Meta{"hand": "made"}
		}
		u, err := e.PutUser(state.User{Email: state.Some(fmt.Sprintf("u%02d@acme.test", i)), Name: state.Some("old"), Meta: state.Some(meta)})
		require.NoError(t, err)
		_, err = e.PutToken(u.ID, state.Token{Name: state.Some("deploy"), CreatedAt: 1_600_000_000_000, Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		_, err = e.PutToken(u.ID, state.Token{Name: state.Some("stale"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
	}
	untouched := map[string]state.User{foreign.ID: foreign, unmanaged.ID: unmanaged}

	faults := emulator.Faults{Seed: seed, Rate5xx: 0.10, Rate429: 0.05, RateLost: 0.03}
	writer := faults
	writer.DeleteRate = 0.2
	e.SetFaults(writer)
	// Served through a wrapper that counts user creates answered 409: a plan built on
	// a complete listing never creates a user that exists (a lost create is resolved
	// by looking the user up, not by sending it again), so each one is a user the
	// listing missed.
	var conflicts atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		e.ServeHTTP(sw, r)
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/user/create") && sw.status == http.StatusConflict {
			conflicts.Add(1)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String()

	env := map[string]string{"CHATBOTKIT_API_TOKEN": token}
	cmd := func(args ...string) (int, string) {
		streams, out, errOut := TestStreams("", env)
		args = append(args, "--api-url", url, "--retry-base", "1ms", "--page-size", "2")
		if seed%2 == 0 {
			args = append(args, "--listing", "paged")
		}
		code := run(context.Background(), args, streams)
		all := out.String() + errOut.String()
		assert.NotContains(t, all, token, "the API token leaked")
		assert.NotRegexp(t, secretRE, all, "a token secret leaked")
		return code, all
	}

	// The first run meets the writer: it may fail on what the writer deleted after it
	// was listed (drift), never on what the listing missed; or it finds, under the
	// lock, that the plan it approved changed (the writer deleted some of it), and
	// applies nothing (exit 4).
	code, out := cmd("sync", "-f", cfg, "--yes", "--secrets-out", sink)
	require.Contains(t, []int{0, exitPartial, exitUnsafe}, code, "sync run 1: only a partial failure is acceptable:\n%s", out)
	if code == exitUnsafe {
		require.Contains(t, out, "the plan changed between planning and taking the lock", "sync run 1")
	}
	deleted := map[string]bool{}
	for _, id := range e.WriterDeletes() {
		deleted[id] = true
	}
	counts := e.FaultCounts()
	e.SetFaults(faults)
	for run := 2; run <= 3; run++ {
		code, out = cmd("sync", "-f", cfg, "--yes", "--secrets-out", sink)
		if code == 0 {
			break
		}
		require.Equal(t, exitPartial, code, "sync run %d: only a partial failure is acceptable:\n%s", run, out)
	}
	require.Equal(t, 0, code, "not converged after two runs without the writer:\n%s", out)

	for k, v := range e.FaultCounts() {
		counts[k] += v
	}
	require.Positive(t, counts["5xx"]+counts["429"]+counts["lost"], "no fault was injected: the test would prove nothing")
	t.Logf("faults injected: %v", counts)

	code, out = cmd("plan", "-f", cfg, "--detailed-exitcode")
	require.Equal(t, 0, code, "a plan after convergence must be empty:\n%s", out)

	// The remote state is the desired one, with nothing duplicated.
	users := e.Users()
	seen := map[string]bool{}
	secrets := readSink(t, sink)
	live := 0
	kept := 0
	for id := range untouched {
		if deleted[id] {
			delete(untouched, id) // the writer's business, not cbk-sync's
		} else {
			kept++
		}
	}
	for _, u := range users {
		key := state.EmailKey(u.Email.Value())
		require.False(t, seen[key], "duplicate user %s", key)
		seen[key] = true
		if before, ok := untouched[u.ID]; ok {
			assert.Equal(t, before.UpdatedAt, u.UpdatedAt, "%s was touched", key)
			assert.Equal(t, before.Meta, u.Meta, "%s was touched", key)
			delete(untouched, u.ID)
			continue
		}
		require.Equal(t, "acme", u.Owner(), "%s is not owned", key)
		require.NotEqual(t, "gone@acme.test", key, "the undeclared owned user was not pruned")
		names := map[string]bool{}
		for _, tok := range e.Tokens(u.ID) {
			name := tok.Name.Value()
			require.False(t, names[name], "%s has two tokens named %s", key, name)
			names[name] = true
			require.Contains(t, []string{"ci", "deploy"}, name, "%s keeps undeclared token %s", key, name)
			require.Equal(t, 1, secrets[tok.ID], "%s token %s: its secret must be in the sink exactly once", key, name)
			live++
		}
		require.Len(t, names, 2, "%s tokens", key)
	}
	require.Empty(t, untouched, "a foreign or unmanaged user the writer left alone is gone")
	require.Len(t, users, 12+kept, "12 declared users plus the untouched ones")
	require.Equal(t, 24, live)
	require.Zero(t, conflicts.Load(), "a user create met 409: a listing missed a user that existed")
	return len(deleted)
}

// statusWriter records the status of an answer; it can still be hijacked, which the
// emulator's lost-answer fault needs.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// readSink counts the sink's lines per token ID.
func readSink(t *testing.T, path string) map[string]int {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	counts := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var rec struct {
			TokenID string `json:"token_id"`
			Token   string `json:"token"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec))
		require.Regexp(t, `^sk-[0-9a-f]{64}$`, rec.Token)
		counts[rec.TokenID]++
	}
	return counts
}
