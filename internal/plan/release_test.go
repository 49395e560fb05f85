package plan

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// releaseScenario: gone@ is owned and no longer declared, with an owned token (with the
// creation nonce), an owned token whose secret was never delivered, and an unmanaged
// token; hand@ is unmanaged and undeclared.
func releaseScenario() (state.Desired, state.Actual) {
	d := state.Desired{Owner: testOwner, ReleaseUsers: true, Users: []state.DesiredUser{du("a@acme.test")}}
	a := actual(
		remoteUser("u-a", "a@acme.test", ownedMeta()),
		remoteUser("u-gone", "gone@acme.test", ownedMeta("plan", "pro")),
		remoteUser("u-hand", "hand@acme.test", state.Null[state.Meta]()),
	)
	a = withTokenList(a, "u-gone",
		remoteToken("t-ci", "ci", ownedMeta(state.NonceKey, "n1"), time.Hour),
		remoteToken("t-half", "half", ownedMeta(state.PendingKey, true), time.Hour),
		remoteToken("t-own", "own", state.Some(meta("by", "customer")), time.Hour),
	)
	return d, a
}

// TestReleaseRemovesOnlyTheMarkers: under prune.users: release an owned user that no
// file declares is released, not deleted and not listed as an orphan: its owned tokens
// lose cbk-sync's markers first, then the user its owner marker, merged so that every
// other meta key stays; nothing else is sent. It counts as an update under the caps.
func TestReleaseRemovesOnlyTheMarkers(t *testing.T) {
	d, a := releaseScenario()
	p, err := Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"token_release gone@acme.test/ci [meta.cbkSyncNonce,meta.cbkSyncOwner]",
		"token_revoke gone@acme.test/half",
		"user_release gone@acme.test [meta.cbkSyncOwner]",
	}, sortedDescribe(p))
	rel, ok := findChange(&p, "user_release gone@acme.test")
	require.True(t, ok)
	assert.Equal(t, `{"meta":{"$update":{"cbkSyncOwner":null}}}`, wire(t, rel))
	tok, ok := findChange(&p, "token_release gone@acme.test/ci")
	require.True(t, ok)
	assert.Equal(t, `{"meta":{"$update":{"cbkSyncNonce":null,"cbkSyncOwner":null}}}`, wire(t, tok))
	assert.Equal(t, "t-ci", tok.TokenID)

	up := p.Users[0]
	assert.Equal(t, UserRelease, up.Changes[len(up.Changes)-1].Action, "the user is released last")
	assert.Equal(t, UserRelease, up.UserAction())
	assert.Empty(t, p.Orphans)
	assert.Equal(t, 0, p.Safety.Deletes)
	assert.Equal(t, 1, p.Safety.Updates, "a release counts under the update caps")
	s := p.Summary()
	assert.Equal(t, 1, s.UserRelease)
	assert.Equal(t, 1, s.TokenRelease)
	assert.True(t, containsSub(p.Warnings, "1 user is updated without a declared alias"), "a release clears an alias: %v", p.Warnings)
	assert.Equal(t, Census{Seen: 3, Declared: 1, OwnedUndeclared: 1, Unmanaged: 1}, *p.Account)

	// A cap of 0 updates refuses it.
	o := DefaultOptions(testNow)
	o.MaxUpdates = 0
	p, err = Compute(d, a, o)
	require.NoError(t, err)
	assert.False(t, p.Safety.Safe)

	// Released, the user is unmanaged: nothing more to do, and declaring it again adopts it.
	after := actual(a.Users[0], remoteUser("u-gone", "gone@acme.test", state.Some(meta("plan", "pro"))), a.Users[2])
	p, err = Compute(d, after, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.Empty(t, describePlan(&p))
	d.Users = append(d.Users, du("gone@acme.test"))
	p, err = Compute(d, after, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.Equal(t, []string{"user_adopt gone@acme.test [meta.cbkSyncOwner]"}, describePlan(&p))
}

// TestReleaseNeedsTheTokenList: the token list of a released user is read (it is not
// otherwise, the user declares no tokens); Compute says which lists it needs.
func TestReleaseNeedsTheTokenList(t *testing.T) {
	d, a := releaseScenario()
	delete(a.Tokens, "u-gone")
	_, err := Compute(d, a, DefaultOptions(testNow))
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrTokensNotRead))
	ids, ok := ReleasesTokens(err)
	require.True(t, ok)
	assert.Equal(t, []string{"u-gone"}, ids)
}

// TestSavedReleaseIsVerified: a saved plan carries the release and its token list;
// apply checks both again, and refuses a plan whose user or tokens changed.
func TestSavedReleaseIsVerified(t *testing.T) {
	d, a := releaseScenario()
	o := DefaultOptions(testNow)
	s := saveAndRead(t, d, a, o, nil)
	assert.Equal(t, Reads{Users: []string{"u-gone"}, Tokens: []string{"u-gone"}}, s.Reads())
	checked, err := s.Check()
	require.NoError(t, err)
	assert.Equal(t, 1, checked.Summary().UserRelease)
	got, err := s.Verify(fetched(a, s))
	require.NoError(t, err)
	assert.Equal(t, 1, got.Summary().UserRelease)
	assert.Equal(t, 1, got.Summary().TokenRelease)

	// A token marked since is seen.
	a2 := withTokenList(actual(a.Users...), "u-gone", append(a.Tokens["u-gone"],
		remoteToken("t-new", "new", ownedMeta(), time.Minute))...)
	_, err = s.Verify(fetched(a2, s))
	require.ErrorIs(t, err, ErrStale)

	// An edited release (one that also renames the user) is refused.
	s = saveAndRead(t, d, a, o, func(f map[string]any) {
		changes := changesOf(f)[0].(map[string]any)["changes"].([]any)
		changes[len(changes)-1].(map[string]any)["user_body"].(map[string]any)["name"] = "X"
	})
	_, err = s.Check()
	require.ErrorIs(t, err, ErrEdited)
}

func sortedDescribe(p Plan) []string { return describePlan(&p) }

// releaseGoldenScenario is the release scenario with an update beside the release, for
// the views' goldens.
func releaseGoldenScenario() (state.Desired, state.Actual, Options) {
	d, a := releaseScenario()
	d.Users[0].Name = state.Some("Alice")
	return d, a, DefaultOptions(testNow)
}

func TestReleaseGoldenConverges(t *testing.T) {
	d, a, o := releaseGoldenScenario()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	s := p.Summary()
	assert.Equal(t, 1, s.UserRelease)
	assert.Equal(t, 1, s.TokenRelease)
	assertConverges(t, d, a, &p, o)
}
