package apply_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

const owner = "acme"

func marker() state.Meta { return state.Meta{state.OwnerKey: owner} }

func userCreate(email string) plan.Change {
	return plan.Change{Action: plan.UserCreate, Email: email, UserBody: &state.UserFields{
		Email: state.Some(email), Name: state.Some("N"), Meta: state.Some(marker()),
	}}
}

func userUpdate(email, id string) plan.Change {
	return plan.Change{Action: plan.UserUpdate, Email: email, UserID: id, UserBody: &state.UserFields{Name: state.Some("N2")}}
}

func tokenCreate(email, id, name string) plan.Change {
	return plan.Change{Action: plan.TokenCreate, Email: email, UserID: id, TokenName: name, TokenBody: &state.TokenFields{
		Name: state.Some(name), Meta: state.Some(marker()),
	}}
}

func tokenRotate(email, id, name, old string) plan.Change {
	c := tokenCreate(email, id, name)
	c.Action, c.TokenID = plan.TokenRotate, old
	return c
}

func tokenRevoke(email, id, tokID string) plan.Change {
	return plan.Change{Action: plan.TokenRevoke, Email: email, UserID: id, TokenID: tokID}
}

func planOf(users ...plan.UserPlan) *plan.Plan { return &plan.Plan{Owner: owner, Users: users} }

func userPlan(email, id string, cs ...plan.Change) plan.UserPlan {
	return plan.UserPlan{Identity: state.Identity{Kind: state.ByEmail, Value: email}, Email: email, UserID: id, Changes: cs}
}

func fixedNow() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }

func run(t *testing.T, f *fakeAPI, p *plan.Plan, sink apply.SecretSink) *apply.Report {
	t.Helper()
	return runDesired(t, f, p, sink, nil)
}

// runDesired runs p with the desired state it was computed from.
func runDesired(t *testing.T, f *fakeAPI, p *plan.Plan, sink apply.SecretSink, d *state.Desired) *apply.Report {
	t.Helper()
	rep, err := apply.Run(context.Background(), f, p, apply.Options{Owner: owner, Secrets: sink, Now: fixedNow, Parallelism: 1, Desired: d})
	require.NoError(t, err)
	return rep
}

// desiredUser declares email with name N (as userCreate plans it) and tokens.
func desiredUser(email string, tokens ...string) state.DesiredUser {
	du := state.DesiredUser{Email: state.Some(email), Name: state.Some("N"), ManageTokens: true}
	for _, n := range tokens {
		du.Tokens = append(du.Tokens, state.DesiredToken{Name: n})
	}
	return du
}

func desiredOf(us ...state.DesiredUser) *state.Desired {
	return &state.Desired{Owner: owner, Users: us}
}

func statuses(rep *apply.Report) []string {
	var out []string
	for _, r := range rep.Results {
		out = append(out, r.Action.String()+":"+r.Status)
	}
	return out
}

func TestOneCallPerAction(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("old@x.test", marker())
	old := f.addToken(uid, "ci", marker())
	gone := f.addToken(uid, "gone", marker())
	sink := &fakeSink{f: f}
	p := planOf(
		userPlan("new@x.test", "", userCreate("new@x.test"), tokenCreate("new@x.test", "", "ci")),
		userPlan("old@x.test", uid, userUpdate("old@x.test", uid), tokenRotate("old@x.test", uid, "ci", old), tokenRevoke("old@x.test", uid, gone)),
	)
	rep := run(t, f, p, sink)

	assert.Equal(t, []string{
		"CreateUser new@x.test", "CreateToken u4/ci", "Deliver t5", "UpdateToken u4/t5",
		"UpdateUser u1", "CreateToken u1/ci", "Deliver t6", "UpdateToken u1/t6", "DeleteToken u1/t2", "DeleteToken u1/t3",
	}, f.calls())
	assert.Equal(t, apply.Totals{OK: 5}, rep.Totals)
	assert.False(t, rep.Failed())
	assert.Equal(t, "u4", rep.Results[0].UserID)
	assert.Equal(t, "u4", rep.Results[1].UserID)
	assert.Equal(t, "t5", rep.Results[1].TokenID)
	assert.Equal(t, "t2", rep.Results[3].TokenID)
	assert.Equal(t, "t6", rep.Results[3].NewTokenID)
	assert.Equal(t, map[string]int{"t5": 1, "t6": 1}, sink.delivered())

	rec := sink.recs[0]
	assert.Equal(t, apply.SecretRecord{Email: "new@x.test", UserID: "u4", TokenName: "ci", TokenID: "t5",
		Token: secretOf("t5"), CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}, rec)

	// Created tokens carry the marker and a nonce.
	toks := f.liveTokens("u4")
	require.Len(t, toks, 1)
	assert.Equal(t, owner, toks[0].Meta.Value()[state.OwnerKey])
	assert.Len(t, toks[0].Meta.Value()[state.NonceKey], 32)
}

func TestRunRefusesTokenCreatesWithoutSinkBeforeAnyCall(t *testing.T) {
	f := newFake(t)
	p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci")))
	_, err := apply.Run(context.Background(), f, p, apply.Options{Owner: owner})
	require.ErrorIs(t, err, apply.ErrNoSecretsSink)
	assert.Empty(t, f.calls())

	// A plan without token creates needs no sink.
	rep, err := apply.Run(context.Background(), f, planOf(userPlan("a@x.test", "", userCreate("a@x.test"))), apply.Options{Owner: owner})
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Totals.OK)
}

func TestLostUserCreateIsFoundAndReplanned(t *testing.T) {
	f := newFake(t)
	f.inject("CreateUser a@x.test", lost)
	p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci")))
	rep := runDesired(t, f, p, &fakeSink{f: f}, desiredOf(desiredUser("a@x.test", "ci")))

	// The user the lost create made is found, its (empty) token list read, and the
	// fresh plan of it is the planned one: no user change, the token created.
	assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "ListTokens u1", "CreateToken u1/ci", "Deliver t2", "UpdateToken u1/t2"}, f.calls())
	assert.Equal(t, []string{"user_create:ok", "token_create:ok"}, statuses(rep))
	assert.Equal(t, "u1", rep.Results[0].UserID)
	assert.Equal(t, "answer lost; found owned user u1 by email; re-planned from its fresh state (0 tokens read): nothing to change for the user", rep.Results[0].Recovered)
}

func TestLostUserCreateWithoutDesiredStateAdoptsAndSkipsTheRest(t *testing.T) {
	f := newFake(t)
	f.inject("CreateUser a@x.test", lost)
	p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci")))
	rep := run(t, f, p, &fakeSink{f: f})

	assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "UpdateUser u1"}, f.calls())
	assert.Equal(t, []string{"user_create:ok", "token_create:skipped"}, statuses(rep))
	assert.Contains(t, rep.Results[0].Recovered, "answer lost; found owned user u1 by email; adopted")
	assert.Contains(t, rep.Results[1].Error, "planned without reading it")
	assert.True(t, rep.Failed(), "what was skipped is left to the next run")
}

// The plan's listing missed a user that exists with every declared token (a
// truncated listing): the create meets 409, and the user is read and re-planned
// before any token is created, so none is duplicated.
func TestUserCreateThatMeetsAnExistingUserReplansItsTokens(t *testing.T) {
	t.Run("every declared token is there: nothing is created", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", marker())
		ci := f.addToken(uid, "ci", marker())
		f.addToken(uid, "deploy", marker())
		p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci"), tokenCreate("a@x.test", "", "deploy")))
		sink := &fakeSink{f: f}
		rep := runDesired(t, f, p, sink, desiredOf(desiredUser("a@x.test", "ci", "deploy")))

		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "ListTokens u1"}, f.calls())
		assert.Equal(t, []string{"user_create:ok", "token_create:ok", "token_create:ok"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Recovered, "409 conflict; found owned user u1 by email; re-planned from its fresh state (2 tokens read)")
		assert.Equal(t, "not needed: user u1 already has token ci as declared", rep.Results[1].Recovered)
		assert.Equal(t, uid, rep.Results[1].UserID)
		assert.Len(t, f.liveTokens(uid), 2)
		assert.Equal(t, ci, f.liveTokens(uid)[0].ID)
		assert.Empty(t, sink.delivered())
		assert.False(t, rep.Failed())
	})
	t.Run("a missing token is created, an undeclared owned one revoked, the unmanaged user adopted", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", state.Meta{"theirs": "kept"})
		f.addToken(uid, "ci", marker())
		old := f.addToken(uid, "old", marker())
		p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci"), tokenCreate("a@x.test", "", "deploy")))
		sink := &fakeSink{f: f}
		rep := runDesired(t, f, p, sink, desiredOf(desiredUser("a@x.test", "ci", "deploy")))

		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "ListTokens u1", "UpdateUser u1",
			"CreateToken u1/deploy", "Deliver t4", "UpdateToken u1/t4", "DeleteToken u1/" + old}, f.calls())
		assert.Equal(t, []string{"user_create:ok", "token_create:ok", "token_create:ok", "token_revoke:ok"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Recovered, "found unmanaged user u1 by email; re-planned from its fresh state (2 tokens read): user_adopt done")
		assert.Equal(t, old, rep.Results[3].TokenID)
		assert.Equal(t, "re-planned: owned and not declared", rep.Results[3].Recovered)
		assert.Equal(t, state.Meta{"theirs": "kept", state.OwnerKey: owner}, f.users[uid].Meta.Value())
		assert.Equal(t, apply.Totals{OK: 4}, rep.Totals)
	})
	t.Run("a pending token a crashed run left is revoked and its name created again", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", marker())
		pending := f.addToken(uid, "ci", state.Meta{state.OwnerKey: owner, state.NonceKey: "n", state.PendingKey: true})
		p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci")))
		sink := &fakeSink{f: f}
		rep := runDesired(t, f, p, sink, desiredOf(desiredUser("a@x.test", "ci")))
		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "ListTokens u1",
			"CreateToken u1/ci", "Deliver t3", "UpdateToken u1/t3", "DeleteToken u1/" + pending}, f.calls())
		assert.Equal(t, []string{"user_create:ok", "token_create:ok", "token_revoke:ok"}, statuses(rep))
		assert.Equal(t, "re-planned: created but its secret was never confirmed delivered", rep.Results[2].Recovered)
		live := f.liveTokens(uid)
		require.Len(t, live, 1)
		assert.Equal(t, "t3", live[0].ID)
		assert.False(t, live[0].Pending())
	})
	t.Run("a failed token read skips the user's tokens", func(t *testing.T) {
		f := newFake(t)
		f.addUser("a@x.test", marker())
		f.inject("ListTokens u1", quota)
		p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci")))
		rep := runDesired(t, f, p, &fakeSink{f: f}, desiredOf(desiredUser("a@x.test", "ci")))
		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "ListTokens u1"}, f.calls())
		assert.Equal(t, []string{"user_create:failed", "token_create:skipped"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Error, "reading its tokens to re-plan it failed")
	})
}

func TestConflictOnUserCreate(t *testing.T) {
	t.Run("unmanaged user is adopted, keeping its meta", func(t *testing.T) {
		f := newFake(t)
		id := f.addUser("A@x.test", state.Meta{"theirs": "kept"})
		rep := run(t, f, planOf(userPlan("a@x.test", "", userCreate("a@x.test"))), nil)
		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "UpdateUser " + id}, f.calls())
		assert.Equal(t, []string{"user_create:ok"}, statuses(rep))
		assert.Equal(t, "409 conflict; found unmanaged user u1 by email; adopted", rep.Results[0].Recovered)
		assert.Equal(t, state.Meta{"theirs": "kept", state.OwnerKey: owner}, f.users[id].Meta.Value())
	})
	t.Run("foreign user is not adopted and its tokens are skipped", func(t *testing.T) {
		f := newFake(t)
		f.addUser("a@x.test", state.Meta{state.OwnerKey: "someone-else"})
		p := planOf(userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci")))
		rep := run(t, f, p, &fakeSink{f: f})
		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test"}, f.calls())
		assert.Equal(t, []string{"user_create:failed", "token_create:skipped"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Error, `belongs to owner "someone-else"`)
		assert.Contains(t, rep.Results[1].Error, "could not be created")
		assert.True(t, rep.Failed())
	})
}

// A create that meets 409 and adopts the user it finds sends the plan's declared alias
// with the adopting update, re-planned or not: an update without it would clear it.
func TestAdoptionAfterConflictKeepsTheDeclaredAlias(t *testing.T) {
	withAlias := func(c plan.Change) plan.Change {
		b := *c.UserBody
		b.Alias = state.Some("acme-eu")
		c.UserBody = &b
		return c
	}
	t.Run("without the desired state: the create body is sent as the update", func(t *testing.T) {
		f := newFake(t)
		id := f.addUser("a@x.test", state.Meta{"theirs": "kept"})
		rep := run(t, f, planOf(userPlan("a@x.test", "", withAlias(userCreate("a@x.test")))), nil)
		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "UpdateUser " + id}, f.calls())
		assert.Equal(t, []string{"user_create:ok"}, statuses(rep))
		assert.Equal(t, "acme-eu", f.aliases[id])
	})
	t.Run("re-planned from the desired state", func(t *testing.T) {
		f := newFake(t)
		id := f.addUser("a@x.test", state.Meta{"theirs": "kept"})
		du := desiredUser("a@x.test")
		du.Alias = "acme-eu"
		rep := runDesired(t, f, planOf(userPlan("a@x.test", "", withAlias(userCreate("a@x.test")))), &fakeSink{f: f}, desiredOf(du))
		assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "ListTokens " + id, "UpdateUser " + id}, f.calls())
		assert.Contains(t, rep.Results[0].Recovered, "user_adopt done")
		assert.Equal(t, "acme-eu", f.aliases[id])
	})
	t.Run("a plain create sends it", func(t *testing.T) {
		f := newFake(t)
		rep := run(t, f, planOf(userPlan("a@x.test", "", withAlias(userCreate("a@x.test")))), nil)
		assert.Equal(t, []string{"user_create:ok"}, statuses(rep))
		assert.Equal(t, "acme-eu", f.aliases[rep.Results[0].UserID])
	})
}

func TestLostUserCreateNotFoundIsSentAgain(t *testing.T) {
	f := newFake(t)
	// The first create never reached the server: the lookup finds nothing.
	f.inject("CreateUser a@x.test", lostBeforeApply)
	rep := run(t, f, planOf(userPlan("a@x.test", "", userCreate("a@x.test"))), nil)
	assert.Equal(t, []string{"CreateUser a@x.test", "ListUsers a@x.test", "CreateUser a@x.test"}, f.calls())
	assert.Equal(t, []string{"user_create:ok"}, statuses(rep))
	assert.Contains(t, rep.Results[0].Recovered, "not found by email")
	assert.Len(t, f.users, 1)
}

func TestLostTokenCreateIsRevokedAndCreatedAgain(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("a@x.test", marker())
	f.inject("CreateToken u1/ci", lost)
	sink := &fakeSink{f: f}
	rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenCreate("a@x.test", uid, "ci"))), sink)

	assert.Equal(t, []string{"CreateToken u1/ci", "ListTokens u1", "DeleteToken u1/t2", "CreateToken u1/ci", "Deliver t3", "UpdateToken u1/t3"}, f.calls())
	assert.Equal(t, []string{"token_create:ok"}, statuses(rep))
	assert.Equal(t, "t3", rep.Results[0].TokenID)
	assert.Contains(t, rep.Results[0].Recovered, "found token t2 by nonce")
	live := f.liveTokens(uid)
	require.Len(t, live, 1)
	assert.Equal(t, "t3", live[0].ID)
	assert.Equal(t, map[string]int{"t3": 1}, sink.delivered(), "every live token's secret delivered exactly once")
}

func TestLostTokenCreateNotFoundIsSentAgain(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("a@x.test", marker())
	f.inject("CreateToken u1/ci", lostBeforeApply)
	sink := &fakeSink{f: f}
	rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenCreate("a@x.test", uid, "ci"))), sink)
	assert.Equal(t, []string{"CreateToken u1/ci", "ListTokens u1", "CreateToken u1/ci", "Deliver t2", "UpdateToken u1/t2"}, f.calls())
	assert.Equal(t, []string{"token_create:ok"}, statuses(rep))
	assert.Equal(t, map[string]int{"t2": 1}, sink.delivered())
}

func TestLostTokenCreatesGiveUpAfterThreeAttempts(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("a@x.test", marker())
	f.inject("CreateToken u1/ci", lost, lost, lost)
	sink := &fakeSink{f: f}
	rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenCreate("a@x.test", uid, "ci"))), sink)
	assert.Equal(t, []string{
		"CreateToken u1/ci", "ListTokens u1", "DeleteToken u1/t2",
		"CreateToken u1/ci", "ListTokens u1", "DeleteToken u1/t3",
		"CreateToken u1/ci", "ListTokens u1", "DeleteToken u1/t4",
	}, f.calls())
	assert.Equal(t, []string{"token_create:failed"}, statuses(rep))
	assert.Contains(t, rep.Results[0].Error, "gave up after 3")
	assert.Empty(t, f.liveTokens(uid), "no live token without a delivered secret")
	assert.Empty(t, sink.delivered())
}

func TestRotation(t *testing.T) {
	t.Run("create, deliver, then revoke", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", marker())
		old := f.addToken(uid, "ci", marker())
		rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenRotate("a@x.test", uid, "ci", old))), &fakeSink{f: f})
		assert.Equal(t, []string{"CreateToken u1/ci", "Deliver t3", "UpdateToken u1/t3", "DeleteToken u1/t2"}, f.calls())
		assert.Equal(t, []string{"token_rotate:ok"}, statuses(rep))
	})
	t.Run("failed create keeps the old token", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", marker())
		old := f.addToken(uid, "ci", marker())
		f.inject("CreateToken u1/ci", quota)
		rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenRotate("a@x.test", uid, "ci", old))), &fakeSink{f: f})
		assert.Equal(t, []string{"CreateToken u1/ci"}, f.calls())
		assert.Equal(t, []string{"token_rotate:failed"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Error, "old token t2 was kept")
		assert.Contains(t, rep.Results[0].Error, "LIMITS_REACHED")
	})
	t.Run("failed delivery revokes the new token and keeps the old", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", marker())
		old := f.addToken(uid, "ci", marker())
		sink := &fakeSink{f: f, fail: errors.New("disk full")}
		rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenRotate("a@x.test", uid, "ci", old))), sink)
		assert.Equal(t, []string{"CreateToken u1/ci", "Deliver t3", "DeleteToken u1/t3"}, f.calls())
		assert.Equal(t, []string{"token_rotate:failed"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Error, "disk full")
		live := f.liveTokens(uid)
		require.Len(t, live, 1)
		assert.Equal(t, old, live[0].ID)
	})
}

func TestFailureSkipsOnlyDependents(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("b@x.test", marker())
	tok := f.addToken(uid, "old", marker())
	f.inject("CreateUser a@x.test", quota)
	f.inject("UpdateUser "+uid, badReq)
	p := planOf(
		userPlan("a@x.test", "", userCreate("a@x.test"), tokenCreate("a@x.test", "", "ci"), tokenCreate("a@x.test", "", "cd")),
		// A failed update does not stop the user's token changes.
		userPlan("b@x.test", uid, userUpdate("b@x.test", uid), tokenRevoke("b@x.test", uid, tok)),
		userPlan("c@x.test", "", userCreate("c@x.test")),
	)
	rep := run(t, f, p, &fakeSink{f: f})
	assert.Equal(t, []string{"CreateUser a@x.test", "UpdateUser u1", "DeleteToken u1/t2", "CreateUser c@x.test"}, f.calls())
	assert.Equal(t, []string{
		"user_create:failed", "token_create:skipped", "token_create:skipped",
		"user_update:failed", "token_revoke:ok", "user_create:ok",
	}, statuses(rep))
	assert.Equal(t, apply.Totals{OK: 2, Failed: 2, Skipped: 2}, rep.Totals)
	assert.Contains(t, rep.Results[0].Error, "LIMITS_REACHED")
	assert.True(t, rep.Failed())
}

func TestDeleteThatMeetsNotFoundIsDone(t *testing.T) {
	f := newFake(t)
	f.inject("DeleteUser u9", notFound)
	f.inject("DeleteToken u8/t1", notFound)
	p := planOf(
		userPlan("a@x.test", "u9", plan.Change{Action: plan.UserDelete, Email: "a@x.test", UserID: "u9"}),
		userPlan("b@x.test", "u8", tokenRevoke("b@x.test", "u8", "t1")),
	)
	rep := run(t, f, p, nil)
	assert.Equal(t, []string{"user_delete:ok", "token_revoke:ok"}, statuses(rep))
}

func TestRejectedCredentialsStopNewWork(t *testing.T) {
	f := newFake(t)
	f.inject("UpdateUser u1", unauth)
	p := planOf(userPlan("a@x.test", "u1", userUpdate("a@x.test", "u1")), userPlan("b@x.test", "u2", userUpdate("b@x.test", "u2")))
	rep := run(t, f, p, nil)
	assert.Equal(t, []string{"UpdateUser u1"}, f.calls())
	assert.Equal(t, []string{"user_update:failed", "user_update:skipped"}, statuses(rep))
	assert.Contains(t, rep.Results[1].Error, "NOT_AUTHENTICATED")
}

func TestParallelismBound(t *testing.T) {
	f := newFake(t)
	const users, limit = 12, 3
	// The first `limit` calls are held until all of them are in flight at once, which
	// proves they run in parallel; every later call runs freely. The fake's exact
	// in-flight counter proves the bound was never exceeded.
	entered := make(chan struct{}, 2*users)
	release := make(chan struct{})
	var held atomic.Int64
	f.hook = func(string) {
		if held.Add(1) <= limit {
			entered <- struct{}{}
			<-release
		}
	}
	var ups []plan.UserPlan
	for i := range users {
		email := fmt.Sprintf("u%d@x.test", i)
		id := f.addUser(email, marker())
		ups = append(ups, userPlan(email, id, userUpdate(email, id), userUpdate(email, id)))
	}
	var progress []int
	done := make(chan *apply.Report)
	go func() {
		rep, err := apply.Run(context.Background(), f, planOf(ups...), apply.Options{
			Owner: owner, Parallelism: limit, Progress: func(d, total int) {
				assert.Equal(t, 2*users, total)
				progress = append(progress, d)
			},
		})
		assert.NoError(t, err)
		done <- rep
	}()
	for range limit {
		<-entered
	}
	assert.EqualValues(t, limit, f.inflight.Load())
	close(release)
	rep := <-done
	assert.EqualValues(t, limit, f.maxInflight.Load())
	assert.Equal(t, 2*users, rep.Totals.OK)
	assert.Equal(t, 2*users, len(f.calls()))
	require.Len(t, progress, 2*users)
	for i, d := range progress {
		assert.Equal(t, i+1, d)
	}
}

func TestInterruptionStartsNothingNew(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	entered := make(chan string, 10)
	release := make(chan struct{})
	f.hook = func(call string) {
		entered <- call
		<-release
	}
	var ups []plan.UserPlan
	for i := range 3 {
		email := fmt.Sprintf("u%d@x.test", i)
		id := f.addUser(email, marker())
		ups = append(ups, userPlan(email, id, userUpdate(email, id), tokenRevoke(email, id, "t9")))
	}
	done := make(chan *apply.Report)
	go func() {
		rep, err := apply.Run(ctx, f, planOf(ups...), apply.Options{Owner: owner, Parallelism: 1})
		assert.NoError(t, err)
		done <- rep
	}()
	assert.Equal(t, "UpdateUser u1", <-entered)
	cancel()
	close(release) // the call in flight completes (the fake checks its context is live)
	rep := <-done
	assert.Equal(t, []string{"UpdateUser u1"}, f.calls())
	assert.True(t, rep.Interrupted)
	assert.True(t, rep.Failed())
	assert.Equal(t, apply.Totals{OK: 1, Skipped: 5}, rep.Totals)
	assert.Equal(t, "ok", rep.Results[0].Status)
	for _, r := range rep.Results[1:] {
		assert.Equal(t, "skipped", r.Status)
		assert.Contains(t, r.Error, "interrupted")
	}
}

func TestCancelledBeforeStartMakesNoCalls(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := apply.Run(ctx, f, planOf(userPlan("a@x.test", "", userCreate("a@x.test"))), apply.Options{Owner: owner})
	require.NoError(t, err)
	assert.Empty(t, f.calls())
	assert.True(t, rep.Interrupted)
	assert.Equal(t, apply.Totals{Skipped: 1}, rep.Totals)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a slog handler.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSecretsStayOutOfLogsAndReport(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("a@x.test", marker())
	old := f.addToken(uid, "rot", marker())
	f.inject("CreateToken u1/lost", lost)
	var logs syncBuffer
	sink := &fakeSink{f: f}
	failing := &fakeSink{f: f, fail: errors.New("sink broke")}
	p := planOf(userPlan("a@x.test", uid,
		tokenCreate("a@x.test", uid, "ci"), tokenCreate("a@x.test", uid, "lost"), tokenRotate("a@x.test", uid, "rot", old)))
	for _, s := range []*fakeSink{sink, failing} {
		rep, err := apply.Run(context.Background(), f, p, apply.Options{
			Owner: owner, Secrets: s, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		require.NoError(t, err)
		b, err := json.Marshal(rep)
		require.NoError(t, err)
		assert.NotContains(t, string(b), "SECRET")
		assert.NotContains(t, fmt.Sprintf("%+v", rep), "SECRET")
	}
	require.Len(t, sink.recs, 3)
	assert.Equal(t, "sk-SECRET-"+sink.recs[0].TokenID, sink.recs[0].Token.Reveal())
	assert.NotEmpty(t, logs.String())
	assert.NotContains(t, logs.String(), "SECRET")
}

func TestReportJSON(t *testing.T) {
	rep := &apply.Report{
		FormatVersion: apply.ReportFormatVersion, ToolVersion: "v1.2.3", ExitCode: 3,
		StartedAt: fixedNow(), Duration: 1500 * time.Millisecond, Retries: 2,
		APICalls: map[string]int64{"user.create": 1},
		Polls:    apply.Polls{Sent: 3, Rejected: 1, WaitMS: 2500, Budget: 2},
		Totals:   apply.Totals{OK: 1},
		Results:  []apply.Result{{Action: plan.UserCreate, Email: "a@x.test", UserID: "u1", Status: "ok"}},
	}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.JSONEq(t, `{
		"format_version": "1", "tool_version": "v1.2.3", "exit_code": 3,
		"started_at": "2025-01-01T00:00:00Z", "duration": "1.5s", "duration_ms": 1500,
		"interrupted": false, "totals": {"ok": 1, "failed": 0, "skipped": 0},
		"api_calls": {"user.create": 1}, "retries": 2,
		"polls": {"sent": 3, "rejected": 1, "wait_ms": 2500, "budget": 2},
		"results": [{"action": "user_create", "email": "a@x.test", "user_id": "u1", "status": "ok"}]
	}`, string(b))
}

func TestFailedDeliveryRevokesTheNewToken(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("a@x.test", marker())
	sink := &fakeSink{f: f, fail: errors.New("disk full")}
	rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenCreate("a@x.test", uid, "ci"), tokenCreate("a@x.test", uid, "cd"))), sink)
	assert.Equal(t, []string{
		"CreateToken u1/ci", "Deliver t2", "DeleteToken u1/t2",
		"CreateToken u1/cd", "Deliver t3", "DeleteToken u1/t3",
	}, f.calls())
	assert.Equal(t, []string{"token_create:failed", "token_create:failed"}, statuses(rep))
	assert.Contains(t, rep.Results[0].Error, "so it was revoked: disk full")
	assert.Empty(t, f.liveTokens(uid), "no live token whose secret was lost")
}

func TestFailedAdoptSkipsTheUsersTokens(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("a@x.test", nil)
	f.inject("UpdateUser "+uid, badReq)
	adopt := plan.Change{Action: plan.UserAdopt, Email: "a@x.test", UserID: uid, UserBody: &state.UserFields{Meta: state.Some(marker()), MetaMerge: true}}
	rep := run(t, f, planOf(userPlan("a@x.test", uid, adopt, tokenCreate("a@x.test", uid, "ci"))), &fakeSink{f: f})
	assert.Equal(t, []string{"UpdateUser u1"}, f.calls())
	assert.Equal(t, []string{"user_adopt:failed", "token_create:skipped"}, statuses(rep))
	assert.Contains(t, rep.Results[1].Error, "could not be adopted")
}

// A token is created pending, its secret delivered, and only then confirmed; a crash
// between any two of these steps leaves a token the next plan treats as undelivered.
func TestCreatedTokenIsPendingUntilItsSecretIsDelivered(t *testing.T) {
	f := newFake(t)
	uid := f.addUser("a@x.test", marker())
	sink := &fakeSink{f: f}
	rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenCreate("a@x.test", uid, "ci"))), sink)
	assert.Equal(t, []string{"CreateToken u1/ci", "Deliver t2", "UpdateToken u1/t2"}, f.calls())
	assert.Equal(t, []string{"token_create:ok"}, statuses(rep))
	assert.Equal(t, []bool{true}, sink.pendingAtDelivery, "pending while the secret is delivered")
	live := f.liveTokens(uid)
	require.Len(t, live, 1)
	assert.False(t, live[0].Pending(), "confirmed after delivery")
	m := live[0].Meta.Value()
	assert.Contains(t, m, state.PendingKey, "cleared by a merge of null")
	assert.Nil(t, m[state.PendingKey])
	assert.Len(t, m[state.NonceKey], 32)
}

func TestFailedConfirmationRevokesTheNewToken(t *testing.T) {
	t.Run("create", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", marker())
		f.inject("UpdateToken u1/t2", badReq)
		rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenCreate("a@x.test", uid, "ci"))), &fakeSink{f: f})
		assert.Equal(t, []string{"CreateToken u1/ci", "Deliver t2", "UpdateToken u1/t2", "DeleteToken u1/t2"}, f.calls())
		assert.Equal(t, []string{"token_create:failed"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Error, "confirming the token failed, so it was revoked")
		assert.Empty(t, f.liveTokens(uid))
	})
	t.Run("rotation keeps the old token", func(t *testing.T) {
		f := newFake(t)
		uid := f.addUser("a@x.test", marker())
		old := f.addToken(uid, "ci", marker())
		f.inject("UpdateToken u1/t3", badReq)
		rep := run(t, f, planOf(userPlan("a@x.test", uid, tokenRotate("a@x.test", uid, "ci", old))), &fakeSink{f: f})
		assert.Equal(t, []string{"CreateToken u1/ci", "Deliver t3", "UpdateToken u1/t3", "DeleteToken u1/t3"}, f.calls())
		assert.Equal(t, []string{"token_rotate:failed"}, statuses(rep))
		assert.Contains(t, rep.Results[0].Error, "old token t2 was kept")
		live := f.liveTokens(uid)
		require.Len(t, live, 1)
		assert.Equal(t, old, live[0].ID)
	})
}
