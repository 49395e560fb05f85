package apply_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/apply"
)

// TestRotationWithFailingConfirmRollsBackTheSinks: twice in a row, a rotation's
// successor is created and delivered, then its confirmation fails and it is revoked.
// The age file and a store kept by an exec hand-off end holding the old token's
// secret, which is still live, each time; the report names the secrets rolled back.
func TestRotationWithFailingConfirmRollsBackTheSinks(t *testing.T) {
	id, r := ageKey(t)
	recipients, err := apply.ParseAgeRecipients(r, "--age-recipient")
	require.NoError(t, err)
	ageDir := filepath.Join(t.TempDir(), "age")
	store := t.TempDir()
	// A store that keeps one version per name, and the one before, as the Kubernetes
	// and AWS recipes do: a revoked record puts the one before back.
	handoff := `sh -c 'f="$0/$CBK_SYNC_TOKEN_NAME"; if [ "${CBK_SYNC_REVOKED:-}" = 1 ]; then cat > "$f.revoked"; mv "$f.prev" "$f"; else [ ! -e "$f" ] || cp "$f" "$f.prev"; cat > "$f"; fi' ` + store

	for _, sinkKind := range []string{"age", "exec"} {
		t.Run(sinkKind, func(t *testing.T) {
			f := newFake(t)
			u := f.addUser("a@acme.test", marker())
			old := f.addToken(u, "ci", marker())
			var sink apply.SecretSink
			var current func() string // the token ID the sink holds for ci
			switch sinkKind {
			case "age":
				s, err := apply.OpenAgeDir(ageDir, recipients)
				require.NoError(t, err)
				rec := realRecord("a@acme.test", "ci", old)
				require.NoError(t, s.Deliver(rec)) // an earlier run's delivery
				sink = s
				current = func() string { return decrypt(t, id, s.Path(rec))["token_id"].(string) }
			case "exec":
				s, err := apply.NewExecSink(handoff, apply.ExecOptions{})
				require.NoError(t, err)
				require.NoError(t, s.Deliver(realRecord("a@acme.test", "ci", old)))
				sink = s
				current = func() string {
					var m map[string]any
					b, err := os.ReadFile(filepath.Join(store, "ci"))
					require.NoError(t, err)
					require.NoError(t, json.Unmarshal(b, &m))
					return m["token_id"].(string)
				}
			}
			for range 2 {
				f.mu.Lock()
				next := f.nextID + 1
				f.mu.Unlock()
				successor := "t" + strconv.Itoa(next)
				f.inject("UpdateToken "+u+"/"+successor, badReq)
				rep := run(t, f, planOf(userPlan("a@acme.test", u, tokenRotate("a@acme.test", u, "ci", old))), sink)
				res := rep.Results[0]
				require.Equal(t, apply.StatusFailed, res.Status)
				assert.Contains(t, res.Error, "its secret was rolled back")
				assert.Equal(t, []string{successor}, res.SecretRolledBack)
				live := f.liveTokens(u)
				require.Len(t, live, 1)
				assert.Equal(t, old, live[0].ID, "the old token is kept")
				assert.Equal(t, old, current(), "the sink holds the live secret again")
			}
			if sinkKind == "exec" {
				b, err := os.ReadFile(filepath.Join(store, "ci.revoked"))
				require.NoError(t, err)
				assert.Contains(t, string(b), `"revoked":true`)
			}
		})
	}
}

// TestFirstCreateWithFailingConfirmRemovesTheAgeFile: with nothing to restore, the
// file of a revoked token is removed.
func TestFirstCreateWithFailingConfirmRemovesTheAgeFile(t *testing.T) {
	sink, err := apply.OpenAgeDir(t.TempDir(), mustRecipients(t))
	require.NoError(t, err)
	f := newFake(t)
	u := f.addUser("a@acme.test", marker())
	f.inject("UpdateToken "+u+"/t2", badReq)
	rep := run(t, f, planOf(userPlan("a@acme.test", u, tokenCreate("a@acme.test", u, "ci"))), sink)
	assert.Equal(t, []string{"t2"}, rep.Results[0].SecretRolledBack)
	_, err = os.Stat(sink.Path(realRecord("a@acme.test", "ci", "t2")))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
