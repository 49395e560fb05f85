package apply_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestApplyThroughLostAnswers runs a plan through the real client against the
// emulator while it drops one in ten write answers (after making the change), fails
// some requests with 5xx and throttles others, then checks what the Reliability
// section promises: no duplicate users or tokens, and every live owned token's secret
// delivered exactly once. A second, fault-free run must converge.
func TestApplyThroughLostAnswers(t *testing.T) {
	emu, err := emulator.New(emulator.Options{Token: "sk-test"})
	require.NoError(t, err)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	api, err := client.New(client.Options{BaseURL: srv.URL, Token: state.Secret("sk-test"), RetryBase: time.Millisecond})
	require.NoError(t, err)

	now := time.Now()
	old := now.Add(-10 * 24 * time.Hour).UnixMilli()
	d := state.Desired{Owner: owner}
	declare := func(email string, tokens ...string) {
		u := state.DesiredUser{Email: state.Some(email), Name: state.Some("User " + email), ManageTokens: true,
			Meta: state.Some(state.Meta{"team": "it"})}
		for _, n := range tokens {
			u.Tokens = append(u.Tokens, state.DesiredToken{Name: n, RotateAfter: 24 * time.Hour})
		}
		d.Users = append(d.Users, u)
	}
	for i := range 30 {
		declare(fmt.Sprintf("new%02d@acme.test", i), "ci", "cd")
	}
	for i := range 8 {
		// Owned, with a token due for rotation and an undeclared one to revoke.
		email := fmt.Sprintf("own%02d@acme.test", i)
		u, err := emu.PutUser(state.User{Email: state.Some(email), Meta: state.Some(marker())})
		require.NoError(t, err)
		for _, n := range []string{"ci", "stale"} {
			_, err := emu.PutToken(u.ID, state.Token{Name: state.Some(n), Meta: state.Some(marker()), CreatedAt: old})
			require.NoError(t, err)
		}
		declare(email, "ci", "cd")
	}
	for i := range 5 {
		// Unmanaged, to adopt, with a token of its own that is kept.
		email := fmt.Sprintf("un%02d@acme.test", i)
		u, err := emu.PutUser(state.User{Email: state.Some(email), Meta: state.Some(state.Meta{"theirs": true})})
		require.NoError(t, err)
		_, err = emu.PutToken(u.ID, state.Token{Name: state.Some("manual"), CreatedAt: old})
		require.NoError(t, err)
		declare(email, "ci")
	}

	computePlan := func() *plan.Plan {
		t.Helper()
		managed := plan.TokenListsToRead(d, nil)
		actual, err := api.ReadActual(context.Background(), func(u state.User) bool { return managed.Has(&u) })
		require.NoError(t, err)
		p, err := plan.Compute(d, actual, plan.Options{Now: time.Now(), MaxDeletes: -1, MaxDeletePercent: -1})
		require.NoError(t, err)
		return &p
	}

	path := filepath.Join(t.TempDir(), "secrets.jsonl")
	sink, err := apply.OpenSecretsFile(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close() })

	p := computePlan()
	s := p.Summary()
	require.Equal(t, plan.Summary{UserCreate: 30, UserUpdate: 8, UserAdopt: 5, TokenCreate: 30*2 + 8 + 5, TokenRevoke: 8, TokenRotate: 8}, s)

	emu.SetFaults(emulator.Faults{Seed: 7, RateLost: 0.1, Rate5xx: 0.03, Rate429: 0.03})
	rep, err := apply.Run(context.Background(), api, p, apply.Options{Owner: owner, Secrets: sink})
	require.NoError(t, err)
	emu.SetFaults(emulator.Faults{})
	require.Positive(t, emu.FaultCounts()["lost"], "the run met lost answers")
	var recovered int
	for _, r := range rep.Results {
		if r.Recovered != "" {
			recovered++
		}
		if r.Status != apply.StatusOK {
			t.Logf("first run: %s %s %s: %s: %s", r.Action, r.Email, r.TokenName, r.Status, r.Error)
		}
	}
	t.Logf("first run: %+v, %d recovered, faults %v", rep.Totals, recovered, emu.FaultCounts())
	assert.Positive(t, recovered, "some lost answers were resolved by lookup")

	if rep.Failed() {
		// What failed under faults, a second run without them must finish.
		rep2, err := apply.Run(context.Background(), api, computePlan(), apply.Options{Owner: owner, Secrets: sink})
		require.NoError(t, err)
		require.False(t, rep2.Failed(), "%+v", rep2.Results)
	}
	require.True(t, computePlan().Empty(), "converged")

	// No duplicate users.
	users := emu.Users()
	require.Len(t, users, len(d.Users))
	emails := map[string]bool{}
	for _, u := range users {
		key := state.EmailKey(u.Email.Value())
		assert.False(t, emails[key], "duplicate user %s", key)
		emails[key] = true
		assert.Equal(t, owner, u.Owner(), key)
	}

	// Every live owned token: one per declared name, its secret delivered exactly once;
	// nothing delivered that is not live.
	require.NoError(t, sink.Close())
	delivered := map[string]int{}
	for _, line := range readLines(t, path) {
		delivered[line["token_id"].(string)]++
		assert.Regexp(t, `^sk-[0-9a-f]{64}$`, line["token"])
	}
	live := map[string]bool{}
	for _, u := range users {
		names := map[string]int{}
		for _, tok := range emu.Tokens(u.ID) {
			if tok.Owner() != owner {
				assert.Equal(t, "manual", tok.Name.Value(), "only the unmanaged token is not ours")
				continue
			}
			names[tok.Name.Value()]++
			live[tok.ID] = true
			assert.Equal(t, 1, delivered[tok.ID], "token %s (%s of %s) delivered once", tok.ID, tok.Name.Value(), u.Email.Value())
		}
		want := map[string]int{"ci": 1, "cd": 1}
		if strings.HasPrefix(u.Email.Value(), "un") {
			want = map[string]int{"ci": 1}
		}
		assert.Equal(t, want, names, u.Email.Value())
	}
	for id := range delivered {
		assert.True(t, live[id], "delivered token %s is live", id)
	}
}
