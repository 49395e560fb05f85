package plan

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// noEmail is a remote user the way ChatBotKit's white-label template creates one:
// with no email at all.
func noEmail(id string, m state.Opt[state.Meta]) state.User {
	u := remoteUser(id, "", m)
	u.Email = state.Null[string]()
	return u
}

func byID(id string, mods ...func(*state.DesiredUser)) state.DesiredUser {
	u := state.DesiredUser{ID: id}
	for _, f := range mods {
		f(&u)
	}
	return u
}

// byExt declares a user by externalId, with the meta key the loader adds for it.
func byExt(ext string, mods ...func(*state.DesiredUser)) state.DesiredUser {
	u := state.DesiredUser{ExternalID: ext, Meta: state.Some(state.Meta{state.DefaultExternalIDKey: ext})}
	for _, f := range mods {
		f(&u)
	}
	return u
}

func withEmail(e string) func(*state.DesiredUser) {
	return func(u *state.DesiredUser) { u.Email = state.Some(e) }
}

func TestComputeIdentities(t *testing.T) {
	extMeta := func(ext string, owned bool) state.Opt[state.Meta] {
		if owned {
			return ownedMeta(state.DefaultExternalIDKey, ext)
		}
		return state.Some(meta(state.DefaultExternalIDKey, ext))
	}
	cases := []computeCase{
		{
			name:   "by id: an unmanaged user without an email is adopted",
			users:  []state.DesiredUser{byID("u1", withName("A"))},
			actual: actual(noEmail("u1", state.Null[state.Meta]())),
			want:   []string{"user_adopt  [name,meta.cbkSyncOwner]"},
		},
		{
			name:   "by id: an owned user that matches has no change, whatever its email",
			users:  []state.DesiredUser{byID("u1", withName("A"))},
			actual: actual(remoteUser("u1", "changed@x.test", ownedMeta(), func(u *state.User) { u.Name = state.Some("A") })),
			want:   []string{},
		},
		{
			name:   "by id: an email changed on the platform is one update that keeps the user",
			prune:  true,
			users:  []state.DesiredUser{byID("u1", withEmail("a@x.test"))},
			actual: actual(remoteUser("u1", "new@x.test", ownedMeta())),
			want:   []string{"user_update a@x.test [email]"},
			bodies: map[string]string{"user_update a@x.test": `{"email":"a@x.test"}`},
		},
		{
			name:   "by id: an email null clears it",
			users:  []state.DesiredUser{byID("u1", func(u *state.DesiredUser) { u.Email = state.Null[string]() })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			want:   []string{"user_update a@x.test [email]"},
			bodies: map[string]string{"user_update a@x.test": `{"email":null}`},
		},
		{
			name:   "by id: an id that does not exist is an error naming it",
			users:  []state.DesiredUser{byID("u404", func(u *state.DesiredUser) { u.Pos = state.Pos{File: "users.yaml", Line: 7, Column: 5} })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			err:    errorString(`plan: users.yaml:7 (id u404): user id "u404" does not exist on the platform, and an id cannot be created`),
		},
		{
			name:   "by externalId: not found, created with its meta key and no email",
			users:  []state.DesiredUser{byExt("cus_1", withName("A"))},
			actual: actual(),
			want:   []string{"user_create  [name,meta.cbkSyncOwner,meta.externalId]"},
			bodies: map[string]string{"user_create ": `{"name":"A","meta":{"cbkSyncOwner":"acme","externalId":"cus_1"}}`},
		},
		{
			name:   "by externalId: found unmanaged, adopted",
			users:  []state.DesiredUser{byExt("cus_1", withEmail("a@x.test"))},
			actual: actual(remoteUser("u1", "a@x.test", extMeta("cus_1", false))),
			want:   []string{"user_adopt a@x.test [meta.cbkSyncOwner]"},
		},
		{
			name:   "by externalId: an email changed in the file is one update",
			prune:  true,
			users:  []state.DesiredUser{byExt("cus_1", withEmail("new@x.test"))},
			actual: actual(remoteUser("u1", "old@x.test", extMeta("cus_1", true))),
			want:   []string{"user_update new@x.test [email]"},
		},
		{
			name:   "by externalId: two remote users with it is an error naming both",
			users:  []state.DesiredUser{byExt("cus_1")},
			actual: actual(noEmail("u1", extMeta("cus_1", true)), noEmail("u2", extMeta("cus_1", false))),
			err:    errorString("externalId cus_1 is held by 2 remote users (u1 and u2)"),
		},
		{
			name:   "by externalId: not found, the declared email's user without one is matched (moving from email)",
			prune:  true,
			users:  []state.DesiredUser{byExt("cus_1", withEmail("a@x.test"))},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			want:   []string{"user_update a@x.test [meta.externalId]"},
		},
		{
			name:   "by externalId: the declared email's user has another one: an error",
			users:  []state.DesiredUser{byExt("cus_1", withEmail("a@x.test"))},
			actual: actual(remoteUser("u1", "a@x.test", extMeta("cus_9", true))),
			err:    errorString(`externalId cus_1 matches no user, and user u1, which has the declared email a@x.test, has externalId "cus_9"`),
		},
		{
			name:   "by email and by id, one user: an error",
			users:  []state.DesiredUser{du("a@x.test"), byID("u1")},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			err:    errorString("email a@x.test and id u1 both name user u1"),
		},
		{
			name:   "an owned user without an email and undeclared is deleted by its id",
			prune:  true,
			actual: actual(noEmail("u1", ownedMeta())),
			want:   []string{"user_delete "},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runComputeCase(t, tc) })
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// An email change under email identity plans a create and a delete (or an orphan): the
// plan says so, and how to pin the user by id; every user delete says it is
// irreversible.
func TestEmailChangeUnderEmailIdentityIsWarned(t *testing.T) {
	for _, prune := range []bool{true, false} {
		d := state.Desired{Owner: testOwner, PruneUsers: prune, Users: []state.DesiredUser{du("new@x.test")}}
		p, err := Compute(d, actual(remoteUser("u1", "old@x.test", ownedMeta())), DefaultOptions(testNow))
		require.NoError(t, err)
		require.Len(t, p.Warnings, 1)
		assert.Contains(t, p.Warnings[0], "an email changed on the platform or in the file looks exactly like this")
		assert.Contains(t, p.Warnings[0], "old@x.test -> `id: u1`")
		if prune {
			assert.Contains(t, p.Warnings[0], "deletes 1 owned user")
			del, ok := findChange(&p, "user_delete old@x.test")
			require.True(t, ok)
			assert.Contains(t, del.Reason, IrreversibleDelete)
			assert.True(t, strings.Contains(IrreversibleDelete, "bots, datasets, files and conversations"))
		} else {
			assert.Contains(t, p.Warnings[0], "lists 1 owned user as orphaned")
		}
	}
	// Pinned by id, the same change is one update, and nothing is said.
	d := state.Desired{Owner: testOwner, PruneUsers: true, Users: []state.DesiredUser{byID("u1", withEmail("new@x.test"))}}
	p, err := Compute(d, actual(remoteUser("u1", "old@x.test", ownedMeta())), DefaultOptions(testNow))
	require.NoError(t, err)
	assert.Equal(t, []string{"user_update new@x.test [email]"}, describePlan(&p))
	for _, w := range p.Warnings {
		assert.NotContains(t, w, "looks exactly like this")
	}
}

// The user a file names by id or externalId is the one whose tokens are read while the
// listing streams, and the only one: a plan by externalId costs the polls of a plan by
// email.
func TestTokenListsToReadFollowIdentities(t *testing.T) {
	d := state.Desired{Owner: testOwner, ExternalIDKey: "clerkId", Users: []state.DesiredUser{
		{ID: "u1", ManageTokens: true},
		{ExternalID: "cus_2", ManageTokens: true},
		{ExternalID: "cus_3", Email: state.Some("three@x.test"), ManageTokens: true},
		{Email: state.Some("four@x.test"), ManageTokens: true},
		{Email: state.Some("five@x.test")},
	}}
	c := TokenListsToRead(d, nil)
	read := func(u state.User) bool { return c.Has(&u) }
	assert.True(t, read(noEmail("u1", state.Null[state.Meta]())))
	assert.True(t, read(noEmail("ux", state.Some(meta("clerkId", "cus_2")))))
	assert.False(t, read(noEmail("uy", state.Some(meta("externalId", "cus_2")))), "another meta key")
	assert.True(t, read(remoteUser("uz", "THREE@x.test", state.Null[state.Meta]())), "the email an externalId falls back on")
	assert.True(t, read(remoteUser("u4", "Four@x.test", state.Null[state.Meta]())))
	assert.False(t, read(remoteUser("u5", "five@x.test", state.Null[state.Meta]())), "declares no tokens")
	assert.False(t, read(noEmail("u6", state.Null[state.Meta]())))
}
