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
	out, err := config.Export("acme", users, tokens)
	require.NoError(t, err)
	d, err := config.LoadBytes("export.yaml", out, nil)
	require.NoError(t, err, "%s", out)

	p, err := plan.Compute(d, state.Actual{Users: users, Tokens: tokens}, plan.DefaultOptions(time.UnixMilli(10)))
	require.NoError(t, err)
	assert.True(t, p.Empty(), "export must plan to no changes; got %+v\n%s", p.Users, out)
	assert.Empty(t, p.Orphans)
}
