package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

func remoteUsers() ([]state.User, map[string][]state.Token) {
	users := []state.User{
		{ID: "u2", Email: state.Some("zed@acme.test"), Name: state.Some("123"), Description: state.Null[string](),
			Meta: state.Some(state.Meta{state.OwnerKey: "acme", "n": 3.0, "b": true, "nested": map[string]any{"x": []any{1.0, "two"}}, "tpl": "${HOME} and $${X}"}),
			Limits: state.Some(state.Limits{"tokens": 5.0, "messages": nil,
				"database": map[string]any{"files": 0.0}, "attachment": map[string]any{"maxFileSize": 2048.0, "kind": "x"}, "foo": 1.5, "conversations": 2.5})},
		{ID: "u1", Email: state.Some("Alice@acme.test"), Name: state.Some("Alice\nDoe"), Image: state.Some("null"),
			Meta: state.Some(state.Meta{state.OwnerKey: "acme", "_hidden": "x", "a.b": "y"})},
		{ID: "u3", Email: state.Some("bob@acme.test")},
		{ID: "u4", Email: state.Null[string]()},
		{ID: "u5", Email: state.Some("ALICE@acme.test")},
	}
	tokens := map[string][]state.Token{
		"u1": {
			{ID: "t2", Name: state.Some("ops"), Meta: state.Some(state.Meta{state.OwnerKey: "acme", state.NonceKey: "n1", "k": "v"})},
			{ID: "t1", Name: state.Some("ci"), Description: state.Some("CI")},
			{ID: "t3", Name: state.Some("ci")},
			{ID: "t4"},
		},
		"u2": {},
	}
	return users, tokens
}

func TestExportRoundTrip(t *testing.T) {
	users, tokens := remoteUsers()
	out, err := Export("acme", users, tokens)
	require.NoError(t, err)
	t.Logf("%s", out)

	d, err := LoadBytes("export.yaml", out, nil)
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "acme", d.Owner)
	require.Len(t, d.Users, 3)

	alice, bob, zed := d.Users[0], d.Users[1], d.Users[2]
	assert.Equal(t, "Alice@acme.test", alice.Email.Value())
	assert.Equal(t, state.Some("Alice\nDoe"), alice.Name)
	assert.Equal(t, state.Some("null"), alice.Image, "a string that looks like null stays a string")
	assert.True(t, alice.Meta.Absent(), "only the marker and refused keys were there")
	assert.True(t, alice.ManageTokens)
	require.Len(t, alice.Tokens, 2)
	assert.Equal(t, "ci", alice.Tokens[0].Name)
	assert.Equal(t, state.Some("CI"), alice.Tokens[0].Description)
	assert.Equal(t, "ops", alice.Tokens[1].Name)
	assert.Equal(t, state.Some(state.Meta{"k": "v"}), alice.Tokens[1].Meta, "marker and nonce stripped")

	assert.Equal(t, "bob@acme.test", bob.Email.Value())
	assert.False(t, bob.ManageTokens, "tokens not read: not managed")
	assert.True(t, bob.Name.Absent())

	assert.Equal(t, state.Some("123"), zed.Name)
	assert.True(t, zed.Description.Absent(), "null remote fields are left unmanaged")
	assert.Equal(t, state.Meta{"n": 3.0, "b": true, "nested": map[string]any{"x": []any{1.0, "two"}}, "tpl": "${HOME} and $${X}"}, zed.Meta.Value())
	assert.Equal(t, state.Limits{"tokens": 5.0, "database": map[string]any{"files": 0.0}, "attachment": map[string]any{"maxFileSize": 2048.0}}, zed.Limits.Value())
	assert.True(t, zed.ManageTokens)
	assert.Empty(t, zed.Tokens)

	assert.Contains(t, string(out), `user u4: its email "" is not a valid address`)
	assert.Contains(t, string(out), `user u5: its email "ALICE@acme.test" differs only in case`)
	assert.Contains(t, string(out), `token t3 not exported`)
	assert.Contains(t, string(out), `meta key "_hidden" not exported`)
	assert.Contains(t, string(out), `limit attachment.kind not exported: the format does not know it (updates keep it remotely)`)
	assert.Contains(t, string(out), `limit foo not exported: the format does not know it (updates keep it remotely)`)
	assert.Contains(t, string(out), `limit conversations not exported: 2.5 is not a whole number from 0 to 9007199254740991`)
	assert.NotContains(t, string(out), state.OwnerKey)
	assert.Contains(t, string(out), "# Aliases cannot be exported: the platform never returns them.")
}

func TestExportWithoutTokensAndEmpty(t *testing.T) {
	users, _ := remoteUsers()
	out, err := Export("acme", users, nil)
	require.NoError(t, err)
	d, err := LoadBytes("export.yaml", out, nil)
	require.NoError(t, err)
	for _, u := range d.Users {
		assert.False(t, u.ManageTokens, u.Email.Value())
	}

	out, err = Export("acme", nil, nil)
	require.NoError(t, err)
	d, err = LoadBytes("export.yaml", out, nil)
	require.NoError(t, err, "%s", out)
	assert.Empty(t, d.Users)

	_, err = Export("Bad Owner", nil, nil)
	assert.EqualError(t, err, `cannot export for owner "Bad Owner": an owner is 1 to 63 characters of a-z, 0-9 and -`)
}
