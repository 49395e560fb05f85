package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

const emuToken = "sk-test"

// newEmulator serves a fresh emulator over loopback HTTP. Its clock moves one
// millisecond per reading so every object has its own createdAt.
func newEmulator(t *testing.T, f emulator.Faults) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	return newEmulatorWith(t, emulator.Options{Faults: f})
}

// newEmulatorWith is newEmulator with more options.
func newEmulatorWith(t *testing.T, o emulator.Options) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	var ms atomic.Int64
	ms.Store(1_700_000_000_000)
	o.Token = emuToken
	o.Now = func() time.Time { return time.UnixMilli(ms.Add(1)) }
	e, err := emulator.New(o)
	require.NoError(t, err)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv
}

func newClient(t *testing.T, srv *httptest.Server, edit ...func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{BaseURL: srv.URL, Token: emuToken, RetryBase: time.Millisecond, RetryMaxElapsed: time.Minute}
	for _, e := range edit {
		e(&o)
	}
	c, err := client.New(o)
	require.NoError(t, err)
	return c
}

// seed stores n users with k tokens each and returns their IDs.
func seed(t *testing.T, e *emulator.Emulator, n, k int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		u, err := e.PutUser(state.User{Email: state.Some(fmt.Sprintf("user%04d@acme.test", i)), Name: state.Some(fmt.Sprint("User ", i))})
		require.NoError(t, err)
		ids[i] = u.ID
		for j := range k {
			_, err := e.PutToken(u.ID, state.Token{Name: state.Some(fmt.Sprint("tok", j))})
			require.NoError(t, err)
		}
	}
	return ids
}

func TestEmulatorReadActualThroughFaults(t *testing.T) {
	for _, jsonl := range []bool{false, true} {
		t.Run(fmt.Sprint("jsonl=", jsonl), func(t *testing.T) {
			e, srv := newEmulator(t, emulator.Faults{})
			ids := seed(t, e, 1000, 2)
			// About faults, not the poll limit: its 1,000-user read would wait a window.
			e.SetFaults(emulator.Faults{Seed: 42, Rate5xx: 0.2, Rate429: 0.1, RateBadBody: 0.05, PollLimit: -1})
			e.ResetCounts()

			c := newClient(t, srv, func(o *client.Options) { o.JSONL = jsonl })
			a, err := c.ReadActual(context.Background(), func(state.User) bool { return true })
			require.NoError(t, err)

			seen := map[string]bool{}
			for _, u := range a.Users {
				require.False(t, seen[u.ID], "user %s twice", u.ID)
				seen[u.ID] = true
			}
			require.Len(t, a.Users, 1000)
			for _, id := range ids {
				require.True(t, seen[id], id)
				ts := a.Tokens[id]
				require.Len(t, ts, 2, id)
				assert.NotEqual(t, ts[0].ID, ts[1].ID)
			}
			require.Len(t, a.Tokens, 1000)

			st := c.Stats()
			counts := e.Counts()
			faults := e.FaultCounts()
			t.Logf("client stats %+v; emulator counts %v; faults %v", st, counts, faults)
			assert.Positive(t, st.Retries)
			assert.Positive(t, st.Throttled)
			// The fewest calls: 10 full pages and the empty page after the 10th
			// (1,000 is a multiple of 100), or one stream; then one fetch showing that
			// the last user listed still exists, so nothing was cut off; one token
			// list per user.
			minUserLists := int64(11)
			if jsonl {
				minUserLists = 1
			}
			reads := counts["user.list"] + counts["token.list"] + counts["user.fetch"]
			assert.Greater(t, reads, minUserLists+1+1000)
			assert.Equal(t, reads, st.Total(), "every attempt reached the emulator")
			assert.Equal(t, minUserLists+1+1000, st.Total()-st.Retries, "one success per needed call")
		})
	}
}

func TestEmulatorReadActualCallCount(t *testing.T) {
	e, srv := newEmulator(t, emulator.Faults{})
	ids := seed(t, e, 250, 1)
	selected := map[string]bool{}
	for _, id := range ids[:100] {
		selected[id] = true
	}
	e.ResetCounts()

	c := newClient(t, srv)
	a, err := c.ReadActual(context.Background(), func(u state.User) bool { return selected[u.ID] })
	require.NoError(t, err)
	assert.Len(t, a.Users, 250)
	assert.Len(t, a.Tokens, 100)
	for id := range selected {
		assert.Len(t, a.Tokens[id], 1)
	}
	counts := e.Counts()
	assert.Equal(t, int64(3), counts["user.list"], "ceil(250/100)")
	assert.Equal(t, int64(100), counts["token.list"])
	var total int64
	for _, n := range counts {
		total += n
	}
	assert.Equal(t, int64(103), total, "nothing else: %v", counts)
	assert.Zero(t, c.Stats().Retries)
}

func TestEmulatorCRUDRoundTrip(t *testing.T) {
	e, srv := newEmulator(t, emulator.Faults{})
	c := newClient(t, srv, func(o *client.Options) { o.UserAgent = "cbk-sync/test" })
	ctx := context.Background()

	id, err := c.CreateUser(ctx, state.UserFields{
		Email:  state.Some("alice@acme.test"),
		Name:   state.Some("Alice"),
		Meta:   state.Some(state.Meta{state.OwnerKey: "acme", "team": "sales"}),
		Limits: state.Some(state.Limits{"tokens": 100.0}),
	})
	require.NoError(t, err)
	require.NotEmpty(t, id)

	u, err := c.FetchUser(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "alice@acme.test", u.Email.Value())
	assert.Equal(t, "acme", u.Owner())
	assert.True(t, u.Image.IsNull(), "unset comes back null")

	require.NoError(t, c.UpdateUser(ctx, id, state.UserFields{
		Name: state.Null[string](), Image: state.Some("https://acme.test/a.png"),
		Meta: state.Some(state.Meta{"region": "eu"}), MetaMerge: true,
	}))
	u, err = c.FetchUser(ctx, id)
	require.NoError(t, err)
	assert.True(t, u.Name.IsNull())
	assert.Equal(t, "https://acme.test/a.png", u.Image.Value())
	assert.Equal(t, state.Meta{state.OwnerKey: "acme", "team": "sales", "region": "eu"}, u.Meta.Value())

	var found []string
	for u, err := range c.ListUsers(ctx, client.ListOptions{Email: "alice@acme.test"}) {
		require.NoError(t, err)
		found = append(found, u.ID)
	}
	assert.Equal(t, []string{id}, found)
	found = nil
	for u, err := range c.ListUsers(ctx, client.ListOptions{Meta: map[string]string{"team": "sales"}}) {
		require.NoError(t, err)
		found = append(found, u.ID)
	}
	assert.Equal(t, []string{id}, found)

	_, err = c.CreateUser(ctx, state.UserFields{Email: state.Some("ALICE@acme.test")})
	assert.True(t, client.IsConflict(err), "%v", err)

	ct, err := c.CreateToken(ctx, id, state.TokenFields{Name: state.Some("ci"), Meta: state.Some(state.Meta{state.NonceKey: "n1"})})
	require.NoError(t, err)
	assert.NotEmpty(t, ct.ID)
	assert.Regexp(t, `^sk-[0-9a-f]{64}$`, ct.Token.Reveal())
	assert.Positive(t, ct.CreatedAt)
	assert.NotContains(t, fmt.Sprint(ct), ct.Token.Reveal())

	require.NoError(t, c.UpdateToken(ctx, id, ct.ID, state.TokenFields{Description: state.Some("CI pipeline")}))
	var tokens []state.Token
	for tk, err := range c.ListTokens(ctx, id, client.ListOptions{}) {
		require.NoError(t, err)
		tokens = append(tokens, tk)
	}
	require.Len(t, tokens, 1)
	assert.Equal(t, "ci", tokens[0].Name.Value())
	assert.Equal(t, "CI pipeline", tokens[0].Description.Value())
	assert.Equal(t, "n1", tokens[0].Meta.Value()[state.NonceKey])

	require.NoError(t, c.DeleteToken(ctx, id, ct.ID))
	require.NoError(t, c.DeleteToken(ctx, id, ct.ID), "a second delete meets 404: done")
	for _, err := range c.ListTokens(ctx, id, client.ListOptions{}) {
		require.NoError(t, err)
		t.Fatal("the token is still listed")
	}

	require.NoError(t, c.DeleteUser(ctx, id))
	require.NoError(t, c.DeleteUser(ctx, id))
	_, err = c.FetchUser(ctx, id)
	assert.True(t, client.IsNotFound(err), "%v", err)

	counts := e.Counts()
	assert.Equal(t, c.Stats().Calls, counts, "the client counted what the emulator saw")
}

func TestEmulatorFaultsOnWrites(t *testing.T) {
	ctx := context.Background()
	t.Run("lost create", func(t *testing.T) {
		e, srv := newEmulator(t, emulator.Faults{RateLost: 1})
		c := newClient(t, srv)
		_, err := c.CreateUser(ctx, state.UserFields{Email: state.Some("bob@acme.test")})
		require.True(t, client.IsLost(err), "%v", err)
		assert.Equal(t, int64(1), e.Counts()["user.create"], "never repeated")
		assert.Len(t, e.Users(), 1, "the emulator did act")
	})
	t.Run("lost update and delete are repeated", func(t *testing.T) {
		e, srv := newEmulator(t, emulator.Faults{})
		u, err := e.PutUser(state.User{Email: state.Some("carol@acme.test")})
		require.NoError(t, err)
		e.SetFaults(emulator.Faults{Seed: 7, RateLost: 0.5, Rate5xx: 0.2, Rate429: 0.1})
		c := newClient(t, srv)
		require.NoError(t, c.UpdateUser(ctx, u.ID, state.UserFields{Name: state.Some("Carol")}))
		require.NoError(t, c.DeleteUser(ctx, u.ID))
		assert.Empty(t, e.Users())
	})
	t.Run("quota", func(t *testing.T) {
		e, srv := newEmulator(t, emulator.Faults{UserQuota: 1})
		c := newClient(t, srv)
		_, err := c.CreateUser(ctx, state.UserFields{Email: state.Some("a@acme.test")})
		require.NoError(t, err)
		_, err = c.CreateUser(ctx, state.UserFields{Email: state.Some("b@acme.test")})
		assert.True(t, client.IsQuota(err), "%v", err)
		assert.Equal(t, int64(2), e.Counts()["user.create"], "a quota error is not repeated")
	})
	t.Run("wrong token", func(t *testing.T) {
		_, srv := newEmulator(t, emulator.Faults{})
		c := newClient(t, srv, func(o *client.Options) { o.Token = "sk-wrong-secret" })
		_, err := c.FetchUser(ctx, "x")
		assert.True(t, client.IsAuth(err), "%v", err)
		assert.NotContains(t, err.Error(), "sk-wrong-secret")
	})
}

// Against the emulator's poll limit, a whole read paces itself: with the budget given
// it meets no rejection; learned, the polls in flight at the first one (at most
// MaxConns) are rejected, then a few probes as the window slides; paged and JSONL
// alike, and the state read is complete.
func TestReadActualUnderThePollLimit(t *testing.T) {
	const users, limit, conns = 40, 15, 8
	window := 150 * time.Millisecond
	for _, tc := range []struct {
		name   string
		budget int
		jsonl  bool
	}{{"given", limit, false}, {"learned", 0, false}, {"given jsonl", limit, true}, {"learned jsonl", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			e, srv := newEmulator(t, emulator.Faults{PollLimit: limit, PollWindow: window})
			seed(t, e, users, 1)
			c := newClient(t, srv, func(o *client.Options) {
				o.PollBudget, o.PollWindow, o.MaxConns, o.JSONL = tc.budget, window, conns, tc.jsonl
			})
			t0 := time.Now()
			a, err := c.ReadActual(context.Background(), func(state.User) bool { return true })
			took := time.Since(t0)
			require.NoError(t, err)
			require.Len(t, a.Users, users)
			require.Len(t, a.Tokens, users)
			admitted, rejected := e.PollCounts()
			require.Equal(t, int64(1+users), admitted)
			st := c.Stats()
			require.Equal(t, rejected, st.PollRejections)
			if tc.budget > 0 {
				require.Zero(t, rejected, "a run with the budget given is never rejected")
			} else {
				// Those in flight when the limit is first met, then probes (issue 20:
				// a learned budget probes up as the window slides): eight in the next
				// window, then at most one a window.
				require.LessOrEqual(t, rejected, int64(conns)+8+int64(took/window))
				require.Positive(t, st.PollBudget)
			}
			require.Positive(t, st.PollWait)
		})
	}
}

// TestReadAliasesAgainstTheEmulator: each alias costs one fetch (not a poll), a missing
// one answers "", a moved one the other user's ID; an invalid alias is refused before
// any call, so it cannot change the path.
func TestReadAliasesAgainstTheEmulator(t *testing.T) {
	e, srv := newEmulator(t, emulator.Faults{})
	c := newClient(t, srv)
	ctx := context.Background()
	a, err := c.CreateUser(ctx, state.UserFields{Email: state.Some("a@acme.test"), Alias: state.Some("acme-eu")})
	require.NoError(t, err)
	b, err := c.CreateUser(ctx, state.UserFields{Email: state.Some("b@acme.test"), Alias: state.Some("b_2")})
	require.NoError(t, err)
	e.ResetCounts()

	got, err := c.ReadAliases(ctx, []string{"acme-eu", "b_2", "gone"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"acme-eu": a, "b_2": b, "gone": ""}, got)
	assert.Equal(t, int64(3), e.Counts()["user.fetch"])
	assert.Zero(t, e.Counts()["user.list"], "no poll")

	u, err := c.FetchUserByAlias(ctx, "acme-eu")
	require.NoError(t, err)
	assert.Equal(t, "a@acme.test", u.Email.Value())
	_, err = c.FetchUserByAlias(ctx, "gone")
	assert.True(t, client.IsNotFound(err), "%v", err)
	for _, bad := range []string{"", "../x", "A", "a/b", "a?b"} {
		_, err := c.FetchUserByAlias(ctx, bad)
		assert.ErrorContains(t, err, "invalid alias", bad)
		_, err = c.ReadAliases(ctx, []string{"acme-eu", bad})
		assert.Error(t, err, bad)
	}
	assert.Equal(t, int64(5), e.Counts()["user.fetch"], "invalid aliases make no call")

	got, err = c.ReadAliases(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
}
