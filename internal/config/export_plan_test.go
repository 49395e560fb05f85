package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestExportPlansNoChanges is the contract of export: the output, loaded back and
// planned against the same remote state, changes nothing for what the owner owns.
func TestExportPlansNoChanges(t *testing.T) {
	owned := func(m state.Meta) state.Opt[state.Meta] {
		m = m.Clone()
		if m == nil {
			m = state.Meta{}
		}
		m[state.OwnerKey] = "acme"
		return state.Some(m)
	}
	users := []state.User{
		{ID: "u1", CreatedAt: 1, Email: state.Some("b@acme.test"), Name: state.Some("B"), Description: state.Null[string](), Image: state.Some("https://x.test/i.png"),
			Meta: owned(state.Meta{"team": "x", "n": 2.0, "deep": map[string]any{"a": []any{"b", 1.0}}}),
			Limits: state.Some(state.Limits{"tokens": 3.0, "messages": nil,
				"database": map[string]any{"files": 9.0}, "file": map[string]any{"maxFileSize": 1e6}, "foo": map[string]any{"bar": 1.0}})},
		{ID: "u2", CreatedAt: 2, Email: state.Some("A@acme.test"), Meta: owned(nil)},
		{ID: "u3", CreatedAt: 3, Email: state.Some("c@acme.test"), Name: state.Some("true"), Meta: owned(state.Meta{"s": "${HOME}"})},
	}
	tokens := map[string][]state.Token{
		"u1": {
			{ID: "t1", CreatedAt: 5, Name: state.Some("ci"), Description: state.Some("CI"), Meta: owned(state.Meta{"p": "ci", state.NonceKey: "n"})},
			{ID: "t2", CreatedAt: 6, Name: state.Some("ops"), Meta: owned(nil)},
		},
		"u2": {},
		"u3": {{ID: "t3", CreatedAt: 7, Name: state.Some("x"), Meta: owned(nil)}},
	}
	out, _, err := config.Export(config.ExportOptions{Owner: "acme"}, users, tokens)
	require.NoError(t, err)
	d, err := config.LoadBytes("export.yaml", out, nil)
	require.NoError(t, err, "%s", out)

	p, err := plan.Compute(d, state.Actual{Users: users, Tokens: tokens}, plan.DefaultOptions(time.UnixMilli(10)))
	require.NoError(t, err)
	assert.True(t, p.Empty(), "export must plan to no changes; got %+v\n%s", p.Users, out)
	assert.Empty(t, p.Orphans)
}

// TestExportEveryUserPlansNoCreateNoDelete exports an account like the ones
// ChatBotKit's white-label template makes (most users without an email), with users
// keyed by an external id, two emails that differ only in case, and unmanaged users
// (--all), under each --identity: every user is written, and the file plans no create
// and no delete: owned users no change, unmanaged ones an adoption each.
func TestExportEveryUserPlansNoCreateNoDelete(t *testing.T) {
	owned := func(kv ...any) state.Opt[state.Meta] {
		m := state.Meta{state.OwnerKey: "acme"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return state.Some(m)
	}
	users := []state.User{
		{ID: "u1", CreatedAt: 1, Email: state.Null[string](), Name: state.Some("Only a name"), Meta: owned()},
		{ID: "u2", CreatedAt: 2, Email: state.Null[string](), Meta: state.Null[state.Meta]()},
		{ID: "u3", CreatedAt: 3, Email: state.Some("Kate@acme.test"), Meta: owned()},
		{ID: "u4", CreatedAt: 4, Email: state.Some("kate@acme.test"), Meta: state.Null[state.Meta]()},
		{ID: "u5", CreatedAt: 5, Email: state.Some("ext@acme.test"), Meta: owned("clerkId", "user_5", "team", "x")},
		{ID: "u6", CreatedAt: 6, Email: state.Null[string](), Meta: state.Some(state.Meta{"clerkId": "user_6"})},
		{ID: "u7", CreatedAt: 7, Email: state.Some("plain@acme.test"), Meta: owned("clerkId", 7.0)},
		{ID: "u8", CreatedAt: 8, Email: state.Null[string](), Meta: owned("clerkId", "dup")},
		{ID: "u9", CreatedAt: 9, Email: state.Null[string](), Meta: owned("clerkId", "dup")},
	}
	for _, kind := range []state.IdentityKind{state.ByEmail, state.ByExternalID, state.ByID} {
		t.Run(kind.String(), func(t *testing.T) {
			out, n, err := config.Export(config.ExportOptions{Owner: "acme", Identity: kind, ExternalIDKey: "clerkId"}, users, nil)
			require.NoError(t, err)
			assert.Equal(t, len(users), n, "%s", out)
			d, err := config.LoadBytes("export.yaml", out, nil)
			require.NoError(t, err, "%s", out)
			require.Len(t, d.Users, len(users))
			assert.Equal(t, "clerkId", d.ExternalIDKey)

			p, err := plan.Compute(d, state.Actual{Users: users}, plan.DefaultOptions(time.UnixMilli(10)))
			require.NoError(t, err, "%s", out)
			s := p.Summary()
			assert.Zero(t, s.UserCreate, "%s", out)
			assert.Zero(t, s.UserDelete)
			assert.Zero(t, s.UserUpdate, "%+v\n%s", p.Users, out)
			assert.Equal(t, 3, s.UserAdopt, "the unmanaged users u2, u4 and u6")
			assert.Empty(t, p.Orphans)

			kinds := map[string]state.IdentityKind{}
			for _, du := range d.Users {
				if du.ID != "" {
					kinds[du.ID] = du.Identity().Kind
				}
			}
			switch kind {
			case state.ByID:
				assert.Len(t, kinds, len(users), "every user by id")
			default:
				assert.Equal(t, state.ByID, kinds["u1"], "no email and no external id: by id")
				assert.Equal(t, state.ByID, kinds["u3"], "an email another user has in another case: by id")
				assert.Equal(t, state.ByID, kinds["u8"], "an external id another user has: by id")
				assert.NotContains(t, kinds, "u5", "by its external id")
			}
			assert.Contains(t, string(out), `meta key "clerkId" is not a text external id (7): not exported (it is kept remotely)`)
			assert.Contains(t, string(out), `its clerkId "dup" is another user's too: not exported (it is kept remotely)`)
		})
	}
}

// TestExportAndPlanAgreeOnSameNamedTokens: of two owned tokens with one name, export
// writes the one the plan keeps (the newest), so the plan of the exported file changes
// nothing of it and revokes only the other.
func TestExportAndPlanAgreeOnSameNamedTokens(t *testing.T) {
	owned := state.Some(state.Meta{state.OwnerKey: "acme"})
	users := []state.User{{ID: "u1", CreatedAt: 1, Email: state.Some("a@acme.test"), Meta: owned}}
	tokens := map[string][]state.Token{"u1": {
		{ID: "t-old", CreatedAt: 100, Name: state.Some("ci"), Description: state.Some("old"), Meta: owned},
		{ID: "t-new", CreatedAt: 200, Name: state.Some("ci"), Description: state.Some("new"), Meta: owned},
	}}
	out, _, err := config.Export(config.ExportOptions{Owner: "acme"}, users, tokens)
	require.NoError(t, err)
	d, err := config.LoadBytes("export.yaml", out, nil)
	require.NoError(t, err, "%s", out)
	require.Equal(t, state.Some("new"), d.Users[0].Tokens[0].Description, "%s", out)

	p, err := plan.Compute(d, state.Actual{Users: users, Tokens: tokens}, plan.DefaultOptions(time.UnixMilli(300)))
	require.NoError(t, err)
	require.Len(t, p.Users, 1)
	var got []string
	for _, c := range p.Users[0].Changes {
		got = append(got, c.Action.String()+" "+c.TokenID)
	}
	assert.Equal(t, []string{"token_revoke t-old"}, got, "the token export wrote is kept as it is")
}

// TestExportSeesTheUsersItDoesNotWrite: an email that a foreign user (never exported)
// has in another case would make the plan refuse the exported user's email as a
// duplicate; export writes that user by id instead, and the plan is empty.
func TestExportSeesTheUsersItDoesNotWrite(t *testing.T) {
	mine := state.User{ID: "u1", CreatedAt: 1, Email: state.Some("kate@acme.test"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})}
	theirs := state.User{ID: "u2", CreatedAt: 2, Email: state.Some("Kate@acme.test"), Meta: state.Some(state.Meta{state.OwnerKey: "other"})}
	all := []state.User{mine, theirs}
	out, _, err := config.Export(config.ExportOptions{Owner: "acme", Remote: all}, []state.User{mine}, nil)
	require.NoError(t, err)
	d, err := config.LoadBytes("export.yaml", out, nil)
	require.NoError(t, err, "%s", out)
	assert.Equal(t, state.Identity{Kind: state.ByID, Value: "u1"}, d.Users[0].Identity(), "%s", out)
	p, err := plan.Compute(d, state.Actual{Users: all}, plan.DefaultOptions(time.UnixMilli(10)))
	require.NoError(t, err)
	assert.True(t, p.Empty(), "%+v", p.Users)
}
