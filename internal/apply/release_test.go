package apply_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// releasePlan is the plan of prune.users: release for the user of uid, which has the
// owned token tid: the token released first, then the user.
func releasePlan(t *testing.T, f *fakeAPI, uid string) *plan.Plan {
	t.Helper()
	u := *f.users[uid]
	d := state.Desired{Owner: owner, ReleaseUsers: true}
	p, err := plan.Compute(d, state.Actual{Users: []state.User{u}, Tokens: map[string][]state.Token{uid: f.liveTokens(uid)}}, plan.DefaultOptions(fixedNow()))
	require.NoError(t, err)
	return &p
}

// TestReleaseRemovesMarkersOnly: a release sends one token update per owned token and
// one user update, each a merge that nulls cbk-sync's keys and nothing else.
func TestReleaseRemovesMarkersOnly(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("gone@x.test", state.Meta{state.OwnerKey: owner, "plan": "pro"})
	tid := f.addToken(uid, "ci", state.Meta{state.OwnerKey: owner, "purpose": "ci"})
	rep := run(t, f, releasePlan(t, f, uid), nil)
	require.False(t, rep.Failed(), "%+v", rep.Results)
	assert.Equal(t, []string{"UpdateToken " + uid + "/" + tid, "UpdateUser " + uid}, f.calls())
	assert.Equal(t, "", f.users[uid].Owner())
	assert.Equal(t, "pro", f.users[uid].Meta.Value()["plan"])
	tok := f.liveTokens(uid)[0]
	assert.Equal(t, "", tok.Owner())
	assert.Equal(t, "ci", tok.Meta.Value()["purpose"])
}

// TestFailedTokenReleaseKeepsTheUserOwned: the user is released only once its tokens
// are, so that the next plan still sees it owned and releases the rest.
func TestFailedTokenReleaseKeepsTheUserOwned(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("gone@x.test", marker())
	tid := f.addToken(uid, "ci", marker())
	f.inject("UpdateToken "+uid+"/"+tid, badReq)
	rep := run(t, f, releasePlan(t, f, uid), nil)
	require.True(t, rep.Failed())
	require.Len(t, rep.Results, 2)
	assert.Equal(t, apply.StatusFailed, rep.Results[0].Status)
	assert.Equal(t, plan.UserRelease, rep.Results[1].Action)
	assert.Equal(t, apply.StatusSkipped, rep.Results[1].Status)
	assert.Contains(t, rep.Results[1].Error, "the user stays owned")
	assert.Equal(t, owner, f.users[uid].Owner())
}
