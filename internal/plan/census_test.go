package plan

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestCensusCountsTheWholeAccount: every user read is counted once, declared or not,
// by ownership; a created user is not seen, and another run's lease is not a user.
func TestCensusCountsTheWholeAccount(t *testing.T) {
	d := state.Desired{Owner: testOwner, Users: []state.DesiredUser{
		du("a@acme.test"), du("hand@acme.test"), du("new@acme.test"),
	}}
	a := actual(
		remoteUser("u-a", "a@acme.test", ownedMeta()),
		remoteUser("u-hand", "hand@acme.test", state.Null[state.Meta]()), // declared and unmanaged: adopted
		remoteUser("u-orphan", "orphan@acme.test", ownedMeta()),
		remoteUser("u-s1", "signup1@acme.test", state.Null[state.Meta]()),
		remoteUser("u-s2", "", state.Some(meta("plan", "free"))), // no email: still a user of the account
		remoteUser("u-f", "f@other.test", state.Some(meta(state.OwnerKey, "other"))),
		remoteUser("u-lease", state.LeaseEmail(testOwner), state.Some(meta(state.OwnerKey, testOwner))),
	)
	p, err := Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	require.NotNil(t, p.Account)
	assert.Equal(t, Census{Seen: 6, Declared: 2, OwnedUndeclared: 1, Unmanaged: 2, Foreign: 1}, *p.Account)
	assert.Equal(t, 4, p.Account.NotDeclared())
	assert.Equal(t, "6 users seen: 2 declared, 1 owned and not declared, 2 unmanaged, 1 foreign; 4 not declared.", p.Account.Line())
	assert.Equal(t, "1 user seen: 1 declared, 0 unmanaged, 0 foreign; 0 not declared.", Census{Seen: 1, Declared: 1}.Line())
}
