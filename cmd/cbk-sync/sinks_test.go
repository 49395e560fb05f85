package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// sinkWorld is an emulator with declared users to create, tokens to rotate and to
// revoke, and faults (lost answers among them), for the end-to-end tests of the age and
// exec secrets sinks.
type sinkWorld struct {
	t      *testing.T
	dir    string
	cfg    string
	e      *emulator.Emulator
	url    string
	seeded map[string]bool // IDs of the tokens that existed before: their secrets are not ours
}

const sinkWorldToken = "sk-sinks-test-api-token"

func newSinkWorld(t *testing.T, seed int64, lost float64) *sinkWorld {
	w := &sinkWorld{t: t, dir: t.TempDir(), seeded: map[string]bool{}}
	var b strings.Builder
	b.WriteString("version: 1\nowner: acme\nusers:\n")
	for i := range 8 {
		fmt.Fprintf(&b, "  - email: u%02d@acme.test\n    tokens:\n      - name: ci\n      - name: deploy\n        rotateAfter: 720h\n", i)
	}
	w.cfg = filepath.Join(w.dir, "config.yaml")
	require.NoError(t, os.WriteFile(w.cfg, []byte(b.String()), 0o644))

	e, err := emulator.New(emulator.Options{Token: sinkWorldToken})
	require.NoError(t, err)
	for i := range 4 { // half exist: an old deploy token to rotate, a stale one to revoke
		u, err := e.PutUser(state.User{Email: state.Some(fmt.Sprintf("u%02d@acme.test", i)), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		for _, name := range []string{"deploy", "stale"} {
			tok, err := e.PutToken(u.ID, state.Token{Name: state.Some(name), CreatedAt: 1_600_000_000_000, Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
			require.NoError(t, err)
			w.seeded[tok.ID] = true
		}
	}
	e.SetFaults(emulator.Faults{Seed: seed, Rate5xx: 0.05, RateLost: lost})
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	// net/http's Shutdown waits 5 s for a connection the client opened but never used
	// (the run's transport is not closed in-process); nothing is in flight by then.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = stop(ctx)
	})
	w.e, w.url = e, url
	return w
}

// run runs cbk-sync in-process and checks that its output carries no secret.
func (w *sinkWorld) run(args ...string) (int, string) {
	streams, out, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": sinkWorldToken})
	code := run(context.Background(), append(args, "--api-url", w.url, "--retry-base", "1ms"), streams)
	all := out.String() + errOut.String()
	assert.NotContains(w.t, all, sinkWorldToken, "the API token leaked")
	assert.NotRegexp(w.t, secretRE, all, "a token secret leaked into the output")
	return code, all
}

// checkDelivered asserts that every live owned token was delivered exactly once (or
// existed before the test), no delivered record is a duplicate, and, when converged,
// every declared token exists and was delivered.
func (w *sinkWorld) checkDelivered(delivered map[string]int, converged bool) {
	t := w.t
	t.Helper()
	for id, n := range delivered {
		require.Equal(t, 1, n, "token %s was delivered %d times", id, n)
	}
	live := 0
	for _, u := range w.e.Users() {
		require.Equal(t, "acme", u.Owner())
		names := map[string]bool{}
		for _, tok := range w.e.Tokens(u.ID) {
			name := tok.Name.Value()
			if w.seeded[tok.ID] {
				require.False(t, converged, "%s keeps the old %s token after convergence", u.Email.Value(), name)
				continue
			}
			require.Equal(t, 1, delivered[tok.ID], "%s token %s (%s) is live but its secret was never delivered", u.Email.Value(), name, tok.ID)
			require.False(t, names[name], "%s has two tokens named %s", u.Email.Value(), name)
			names[name] = true
			live++
		}
		// A rotation whose new secret could not be delivered keeps the old token.
		if !converged && u.Email.Value() < "u04" {
			hasDeploy := false
			for _, tok := range w.e.Tokens(u.ID) {
				hasDeploy = hasDeploy || tok.Name.Value() == "deploy"
			}
			require.True(t, hasDeploy, "%s lost its deploy token", u.Email.Value())
		}
	}
	if converged {
		require.Positive(t, w.e.FaultCounts()["lost"], "no answer was lost: the test would prove little")
		require.Len(t, w.e.Users(), 8)
		require.Equal(t, 16, live)
		code, out := w.run("plan", "-f", w.cfg, "--detailed-exitcode")
		require.Equal(t, 0, code, "a plan after convergence must be empty:\n%s", out)
	}
}

// scanForSecrets fails if any file under dir holds a cleartext secret.
func scanForSecrets(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if secretRE.Match(b) {
			t.Errorf("a cleartext secret is on disk in %s", path)
		}
		return nil
	}))
}

// parseRecord checks one delivered JSON line and returns its token ID.
func parseRecord(t *testing.T, line []byte) string {
	t.Helper()
	var rec struct {
		Email     string    `json:"email"`
		UserID    string    `json:"user_id"`
		TokenName string    `json:"token_name"`
		TokenID   string    `json:"token_id"`
		Token     string    `json:"token"`
		CreatedAt time.Time `json:"created_at"`
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rec), "%d bytes", len(line))
	require.Regexp(t, `^u0[0-7]@acme\.test$`, rec.Email)
	require.NotEmpty(t, rec.UserID)
	require.Contains(t, []string{"ci", "deploy"}, rec.TokenName)
	require.NotEmpty(t, rec.TokenID)
	require.Regexp(t, `^sk-[0-9a-f]{64}$`, rec.Token)
	require.False(t, rec.CreatedAt.IsZero())
	return rec.TokenID
}

// TestAgeSinkEndToEnd: with lost answers and 5xx injected, sync converges with every
// live owned token's secret in exactly one age file, each file decrypts with the age
// tool to a valid record, and no cleartext secret is anywhere on disk.
func TestAgeSinkEndToEnd(t *testing.T) {
	agePath := requireTool(t, "age", "the age sink's end-to-end test (go install filippo.io/age/cmd/...)")
	keygen := requireTool(t, "age-keygen", "the age sink's end-to-end test (go install filippo.io/age/cmd/...)")
	w := newSinkWorld(t, 7, 0.2)
	key := filepath.Join(w.dir, "key.txt")
	require.NoError(t, exec.Command(keygen, "-o", key).Run())
	pub, err := exec.Command(keygen, "-y", key).Output()
	require.NoError(t, err)
	recipients := filepath.Join(w.dir, "recipients.txt")
	require.NoError(t, os.WriteFile(recipients, []byte("# the platform team\n"+string(pub)), 0o644))
	out := filepath.Join(w.dir, "chatbotkit-secrets")

	var code int
	var log string
	for range 4 {
		code, log = w.run("sync", "-f", w.cfg, "--yes", "--secrets-out", "age:"+out, "--age-recipients-file", recipients)
		assert.Contains(t, log, "Secrets of new tokens go to age-encrypted files "+out)
		if code == 0 {
			break
		}
		require.Equal(t, exitPartial, code, log)
	}
	require.Equal(t, 0, code, "not converged after four runs:\n%s", log)

	delivered := map[string]int{}
	files := 0
	require.NoError(t, filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm(), path)
			return nil
		}
		require.True(t, strings.HasSuffix(path, ".age"), "only age files in the directory: %s", path)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), path)
		plain, err := exec.Command(agePath, "-d", "-i", key, path).Output()
		require.NoError(t, err, "age -d %s", path)
		require.True(t, bytes.HasSuffix(plain, []byte("\n")) && bytes.Count(plain, []byte("\n")) == 1, "one JSON line in %s", path)
		delivered[parseRecord(t, plain)]++
		files++
		return nil
	}))
	require.GreaterOrEqual(t, files, 16)
	w.checkDelivered(delivered, true)
	scanForSecrets(t, w.dir)
}

// TestExecSinkEndToEnd: a --secrets-exec command that fails every third delivery, with
// lost answers injected: after the first run (exit 3) no live token's secret is
// undelivered and no rotation lost its old token; the second run converges. The
// command echoes each record to its stderr, which is logged: the secrets must not be.
func TestExecSinkEndToEnd(t *testing.T) {
	w := newSinkWorld(t, 11, 0.12) // one user at a time: the same faults every run
	script := filepath.Join(w.dir, "deliver.sh")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
# Stores the record on stdin; while $1/fail exists, fails every third delivery.
n=$(cat "$1/count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$1/count"
if [ -e "$1/fail" ] && [ $((n % 3)) -eq 0 ]; then
  cat > /dev/null
  echo "store unavailable for delivery $n" >&2
  exit 1
fi
tee -a "$1/delivered-secrets.jsonl" >&2
echo "stored $CBK_SYNC_EMAIL/$CBK_SYNC_TOKEN_NAME"
`), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(w.dir, "fail"), nil, 0o644))
	sync := func() (int, string) {
		return w.run("sync", "-f", w.cfg, "--yes", "--parallelism", "1", "--secrets-exec", script+" "+w.dir)
	}

	code, log := sync()
	require.Equal(t, exitPartial, code, log)
	assert.Contains(t, log, "Secrets of new tokens go to the command "+script)
	assert.Contains(t, log, "store unavailable for delivery 3")
	assert.Contains(t, log, `msg="secrets-exec output"`)
	assert.Contains(t, log, "so it was revoked")
	assert.Contains(t, log, "[REDACTED]", "the echoed record is logged with its secret removed")
	w.checkDelivered(readDelivered(t, filepath.Join(w.dir, "delivered-secrets.jsonl")), false)

	require.NoError(t, os.Remove(filepath.Join(w.dir, "fail")))
	code, log = sync()
	require.Equal(t, 0, code, "the second run must converge:\n%s", log)
	w.checkDelivered(readDelivered(t, filepath.Join(w.dir, "delivered-secrets.jsonl")), true)
}

func readDelivered(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	counts := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		counts[parseRecord(t, sc.Bytes())]++
	}
	return counts
}

// TestStdoutSinkEndToEnd: --secrets-out - under the same faults: every live token's
// secret is on stdout exactly once, across runs, and nothing else is (the plan and the
// logs go to stderr, which carries no secret).
func TestStdoutSinkEndToEnd(t *testing.T) {
	w := newSinkWorld(t, 5, 0.2)
	var secrets bytes.Buffer
	code := 0
	for range 4 {
		streams, out, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": sinkWorldToken})
		code = run(context.Background(), []string{"sync", "-f", w.cfg, "--yes", "--secrets-out", "-", "--api-url", w.url, "--retry-base", "1ms"}, streams)
		assert.NotRegexp(t, secretRE, errOut.String(), "a secret leaked into stderr")
		assert.Contains(t, errOut.String(), "Secrets of new tokens go to stdout, as JSON lines.")
		secrets.Write(out.Bytes())
		if code == 0 {
			break
		}
		require.Equal(t, exitPartial, code, errOut.String())
	}
	require.Equal(t, 0, code)
	delivered := map[string]int{}
	sc := bufio.NewScanner(&secrets)
	for sc.Scan() {
		delivered[parseRecord(t, sc.Bytes())]++
	}
	w.checkDelivered(delivered, true)
}
