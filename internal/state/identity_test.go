package state

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIdentityPrecedenceAndKeys(t *testing.T) {
	du := DesiredUser{Email: Some("Kate@Acme.test")}
	assert.Equal(t, Identity{Kind: ByEmail, Value: "Kate@Acme.test"}, du.Identity())
	assert.Equal(t, "email:kate@acme.test", du.Identity().Key(), "emails fold ASCII case")
	du.ExternalID = "cus_1"
	assert.Equal(t, Identity{Kind: ByExternalID, Value: "cus_1"}, du.Identity(), "externalId before email")
	du.ID = "u1"
	assert.Equal(t, Identity{Kind: ByID, Value: "u1"}, du.Identity(), "id before externalId")
	assert.Equal(t, "id u1", du.Identity().String())

	// Kinds never collide, and ids and external ids keep their case.
	assert.NotEqual(t, Identity{Kind: ByID, Value: "x"}.Key(), Identity{Kind: ByExternalID, Value: "x"}.Key())
	assert.NotEqual(t, Identity{Kind: ByID, Value: "U1"}.Key(), Identity{Kind: ByID, Value: "u1"}.Key())

	b, err := json.Marshal(Identity{Kind: ByExternalID, Value: "cus_1"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"kind":"externalId","value":"cus_1"}`, string(b))
	var back Identity
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, Identity{Kind: ByExternalID, Value: "cus_1"}, back)
	assert.Error(t, json.Unmarshal([]byte(`{"kind":"phone","value":"1"}`), &back))

	// A remote user no file declares is named by its email, else its id.
	u := User{ID: "u9", Email: Null[string]()}
	assert.Equal(t, Identity{Kind: ByID, Value: "u9"}, u.Identity())
	u.Email = Some("a@acme.test")
	assert.Equal(t, Identity{Kind: ByEmail, Value: "a@acme.test"}, u.Identity())
}

func TestUserIndex(t *testing.T) {
	users := []User{
		{ID: "u1", Email: Some("a@acme.test"), Meta: Some(Meta{"externalId": "cus_1"})},
		{ID: "u2", Email: Some("B@acme.test"), Meta: Some(Meta{"externalId": 2.0, "clerk": "c2"})},
		{ID: "u3", Email: Some("b@ACME.test")},
		{ID: "u4", Email: Null[string](), Meta: Some(Meta{"externalId": "dup"})},
		{ID: "u5", Email: Null[string](), Meta: Some(Meta{"externalId": "dup"})},
		{ID: "u6", Email: Null[string](), Meta: Some(Meta{"externalId": ""})},
	}
	x := NewUserIndex(users, "")
	find := func(k IdentityKind, v string) (int, error) { return x.Find(Identity{Kind: k, Value: v}) }

	i, err := find(ByID, "u4")
	require.NoError(t, err)
	assert.Equal(t, 3, i)
	i, err = find(ByEmail, "A@Acme.TEST")
	require.NoError(t, err)
	assert.Equal(t, 0, i)
	i, err = find(ByExternalID, "cus_1")
	require.NoError(t, err)
	assert.Equal(t, 0, i)
	for _, miss := range []Identity{{ByID, "nope"}, {ByEmail, ""}, {ByExternalID, "2"}, {ByExternalID, ""}} {
		i, err = x.Find(miss)
		require.NoError(t, err)
		assert.Equal(t, -1, i, "%v: a number or an empty string is no external id", miss)
	}

	// Duplicates are an error naming every user that has the identity.
	_, err = find(ByEmail, "b@acme.test")
	var dup *DuplicateError
	require.ErrorAs(t, err, &dup)
	assert.Equal(t, []string{"u2", "u3"}, dup.IDs)
	assert.EqualError(t, err, "email b@acme.test is held by 2 remote users (u2 and u3): cbk-sync will not guess which one the file means; declare the user by `id` instead")
	_, err = find(ByExternalID, "dup")
	require.ErrorAs(t, err, &dup)
	assert.Equal(t, []string{"u4", "u5"}, dup.IDs)

	// Another meta key.
	i, err = NewUserIndex(users, "clerk").Find(Identity{Kind: ByExternalID, Value: "c2"})
	require.NoError(t, err)
	assert.Equal(t, 1, i)

	// Match: an external id no user has falls back on the declared email, when that
	// user has no external id of its own.
	j, err := x.Match(&DesiredUser{ExternalID: "new", Email: Some("a@acme.test")})
	assert.Equal(t, -1, j)
	assert.ErrorContains(t, err, `externalId new matches no user, and user u1, which has the declared email a@acme.test, has externalId "cus_1"`)
	y := NewUserIndex([]User{{ID: "u7", Email: Some("c@acme.test")}}, "")
	j, err = y.Match(&DesiredUser{ExternalID: "new", Email: Some("C@acme.test")})
	require.NoError(t, err)
	assert.Equal(t, 0, j)
	j, err = y.Match(&DesiredUser{ExternalID: "new"})
	require.NoError(t, err)
	assert.Equal(t, -1, j, "no email to fall back on: a create")
	j, err = y.Match(&DesiredUser{ID: "u7", Email: Some("other@acme.test")})
	require.NoError(t, err)
	assert.Equal(t, 0, j, "by id, whatever the email")
}

func TestClaims(t *testing.T) {
	c := NewClaims("clerk")
	c.Add(&DesiredUser{ID: "u1"})
	c.Add(&DesiredUser{ExternalID: "c2", Email: Some("Two@acme.test")})
	c.Add(&DesiredUser{Email: Some("three@acme.test")})
	for _, tc := range []struct {
		u    User
		want bool
	}{
		{User{ID: "u1"}, true},
		{User{ID: "x", Meta: Some(Meta{"clerk": "c2"})}, true},
		{User{ID: "x", Meta: Some(Meta{"externalId": "c2"})}, false},
		{User{ID: "x", Email: Some("two@ACME.test")}, true},
		{User{ID: "x", Email: Some("THREE@acme.test")}, true},
		{User{ID: "x", Email: Some("four@acme.test")}, false},
		{User{ID: "x"}, false},
	} {
		assert.Equal(t, tc.want, c.Has(&tc.u), "%+v", tc.u)
	}
}

func TestTokenRule(t *testing.T) {
	owned := Some(Meta{OwnerKey: "acme"})
	pending := Some(Meta{OwnerKey: "acme", PendingKey: true})
	old := Token{ID: "t1", CreatedAt: 1, Meta: owned}
	newer := Token{ID: "t2", CreatedAt: 2, Meta: owned}
	unowned := Token{ID: "t3", CreatedAt: 3}
	assert.True(t, PreferToken(&newer, &old, "acme"), "the newest")
	assert.False(t, PreferToken(&old, &newer, "acme"))
	assert.True(t, PreferToken(&old, &unowned, "acme"), "owned before newer")
	sameAge := Token{ID: "t0", CreatedAt: 2, Meta: owned}
	assert.True(t, PreferToken(&newer, &sameAge, "acme"), "then the greatest ID")
	assert.False(t, TokenKeepable(&Token{ID: "p", Meta: pending}, "acme"), "pending and owned: never kept")
	assert.True(t, TokenKeepable(&Token{ID: "p", Meta: pending}, "other"))
}
