package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptJSONKeepsMissingNullAndSetApart(t *testing.T) {
	var u User
	require.NoError(t, json.Unmarshal([]byte(`{"id":"u1","name":null,"email":"a@b.test","limits":{"tokens":5,"database":null}}`), &u))
	assert.True(t, u.Description.Absent(), "missing field must be absent (unknown)")
	assert.True(t, u.Name.IsNull())
	assert.Equal(t, "a@b.test", u.Email.Value())
	l, ok := u.Limits.Get()
	require.True(t, ok)
	assert.Equal(t, Limits{"tokens": 5.0, "database": nil}, l)

	out, err := json.Marshal(u)
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"u1","name":null,"email":"a@b.test","limits":{"tokens":5,"database":null}}`, string(out))
}

func TestWireJSONMetaModes(t *testing.T) {
	f := UserFields{Name: Some("A"), Meta: Some(Meta{"k": "v"}), MetaMerge: true, Image: Null[string]()}
	b, err := f.WireJSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"A","image":null,"meta":{"$update":{"k":"v"}}}`, string(b))

	f.MetaMerge = false
	b, err = f.WireJSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"A","image":null,"meta":{"k":"v"}}`, string(b))

	b, err = TokenFields{Meta: Null[Meta]()}.WireJSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{"meta":null}`, string(b))
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("sk-" + "0123456789abcdef")
	for _, f := range []string{"%v", "%s", "%q", "%x", "%#v", "%+v"} {
		assert.NotContains(t, fmt.Sprintf(f, s), "0123456789abcdef", f)
		assert.NotContains(t, fmt.Sprintf(f, struct{ S Secret }{s}), "0123456789abcdef", f)
	}
	b, err := json.Marshal(CreatedToken{ID: "t", Token: s})
	require.NoError(t, err)
	assert.NotContains(t, string(b), "0123456789abcdef")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s)
	assert.NotContains(t, buf.String(), "0123456789abcdef")
	assert.Equal(t, "sk-0123456789abcdef", s.Reveal())

	var ct CreatedToken
	require.NoError(t, json.Unmarshal([]byte(`{"id":"t","token":"sk-1"}`), &ct))
	assert.Equal(t, "sk-1", ct.Token.Reveal())
}

func TestNormalizeMetaComparesYAMLAndJSONForms(t *testing.T) {
	a, err := NormalizeMeta(map[string]any{"n": 3, "s": "x", "nested": map[string]any{"b": true}})
	require.NoError(t, err)
	var b any
	require.NoError(t, json.Unmarshal([]byte(`{"nested":{"b":true},"s":"x","n":3}`), &b))
	assert.Equal(t, b, a)
	assert.True(t, EqualJSON(a, b))
	assert.False(t, EqualJSON(a, map[string]any{"n": 4}))
}

func TestOverlayLimitsKeepsEveryRemoteKeyItDoesNotDeclare(t *testing.T) {
	remote := Limits{"tokens": 1.0, "foo": map[string]any{"bar": 2.0}, "file": map[string]any{"maxFileSize": 3.0, "x": "y"},
		"database": map[string]any{"files": 4.0, "records": 5.0}, "attachment": nil}
	before := remote.Clone()
	declared := Limits{"tokens": 9.0, "database": map[string]any{"files": nil, "datasets": 6.0},
		"attachment": map[string]any{"maxFileSize": 7.0}, "messages": nil}
	got := OverlayLimits(remote, declared)
	assert.Equal(t, Limits{"tokens": 9.0, "foo": map[string]any{"bar": 2.0},
		"file":       map[string]any{"maxFileSize": 3.0, "x": "y"},
		"database":   map[string]any{"records": 5.0, "datasets": 6.0},
		"attachment": map[string]any{"maxFileSize": 7.0}}, got)
	assert.Equal(t, before, remote, "the remote limits are not changed")
	got["foo"].(map[string]any)["bar"] = 0.0
	assert.Equal(t, 2.0, remote["foo"].(map[string]any)["bar"], "the result shares nothing with remote")

	assert.Equal(t, Limits{"tokens": 1.0}, OverlayLimits(nil, Limits{"tokens": 1.0}))
	// A declared null is "no such limit": the key is left out, never sent as null (the
	// platform refuses null for a known key or section, and the whole update with it).
	assert.Equal(t, Limits{}, OverlayLimits(Limits{"database": map[string]any{"files": 1.0}}, Limits{"database": nil}))
	assert.Equal(t, Limits{"messages": 2.0, "database": map[string]any{"records": 3.0}},
		OverlayLimits(Limits{"tokens": 1.0, "messages": 2.0, "database": map[string]any{"files": 1.0, "records": 3.0}},
			Limits{"tokens": nil, "database": map[string]any{"files": nil}}))
	// A null already stored remotely at a known place is dropped too; unknown keys keep theirs.
	assert.Equal(t, Limits{"foo": nil, "database": map[string]any{"x": nil}},
		OverlayLimits(Limits{"tokens": nil, "file": nil, "foo": nil, "database": map[string]any{"files": nil, "x": nil}}, nil))
	assert.Equal(t, Limits{"tokens": 1.0, "database": map[string]any{}}, WireLimits(Limits{"tokens": 1.0, "messages": nil, "file": nil, "database": map[string]any{"files": nil}}))
	for _, l := range []Limits{
		OverlayLimits(Limits{"tokens": nil}, Limits{"file": nil}),
		WireLimits(Limits{"tokens": nil, "database": nil}),
	} {
		assert.NoError(t, CheckWireLimits(l), "%v", l)
	}
}

func TestCheckLimits(t *testing.T) {
	assert.NoError(t, CheckLimits(Limits{"tokens": 0.0, "database": map[string]any{"files": 5.0, "other": -1.5},
		"file": map[string]any{"maxFileSize": float64(MaxLimit)}, "attachment": nil, "unknown": "anything"}))
	for _, bad := range []Limits{
		{"tokens": 1.5}, {"tokens": -1.0}, {"tokens": "5"}, {"messages": true}, {"database": 5.0},
		{"database": map[string]any{"files": 1e300}}, {"file": map[string]any{"maxFileSize": float64(MaxLimit) + 2}},
		{"attachment": []any{}},
	} {
		assert.Error(t, CheckLimits(bad), "%v", bad)
		assert.Error(t, CheckWireLimits(bad), "%v", bad)
	}
	for _, null := range []Limits{{"tokens": nil}, {"database": nil}, {"database": map[string]any{"files": nil}}, {"attachment": nil}} {
		assert.NoError(t, CheckLimits(null), "declared: null means no such limit")
		assert.Error(t, CheckWireLimits(null), "on the wire: null for a known key is a 400")
	}
	assert.NoError(t, CheckWireLimits(Limits{"unknown": nil, "database": map[string]any{"other": nil}}))
}

func TestEmailKeyFoldsASCIIOnly(t *testing.T) {
	assert.Equal(t, "kate@acme.test", EmailKey(" Kate@ACME.test\t"))
	assert.Equal(t, "kate@acme.test", EmailKey("kate@acme.test"))
	// The Kelvin sign lower-cases to "k" under Unicode rules; it must stay a different key.
	assert.NotEqual(t, EmailKey("kate@acme.test"), EmailKey("\u212aate@acme.test"))
	assert.Equal(t, "\u212aate@acme.test", EmailKey("\u212aate@acme.test"))
	// Other non-ASCII letters keep their case too (İ lower-cases to "i̇" in Unicode).
	assert.Equal(t, "\u0130nfo@acme.test", EmailKey("\u0130nfo@ACME.test"))
}
