package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func load(t *testing.T, doc string, lookup func(string) (string, bool)) state.Desired {
	t.Helper()
	d, err := LoadBytes("c.yaml", []byte(doc), lookup)
	require.NoError(t, err)
	return d
}

func TestLoadFullConfig(t *testing.T) {
	d, err := Load([]string{"testdata/full.yaml"}, nil)
	require.NoError(t, err)
	assert.Equal(t, "acme-platform", d.Owner)
	assert.False(t, d.PruneUsers)
	require.Len(t, d.Users, 5)
	assert.Equal(t, "stripeCustomerId", d.ExternalIDKey)

	alice := d.Users[0]
	assert.Equal(t, "alice@acme.test", alice.Email.Value())
	assert.Equal(t, state.Pos{File: "testdata/full.yaml", Line: 23, Column: 5}, alice.Pos)
	assert.Equal(t, "alice-sales", alice.Alias)
	assert.Equal(t, map[string]any{"maxFileSize": 10485760.0}, alice.Limits.Value()["file"])
	assert.Equal(t, map[string]any{"maxFileSize": 2097152.0}, alice.Limits.Value()["attachment"])
	assert.Equal(t, state.Some("Alice Doe"), alice.Name)
	assert.True(t, alice.MetaExact)
	assert.True(t, alice.ExclusiveTokens)
	assert.Equal(t, state.Meta{"plan": "standard", "team": "sales", "region": "eu",
		"tier": map[string]any{"level": float64(2), "flags": []any{"a", "b"}}}, alice.Meta.Value())
	lim := alice.Limits.Value()
	assert.Equal(t, 100000.0, lim["tokens"])
	assert.Equal(t, 100.0, lim["database"].(map[string]any)["files"])
	assert.True(t, alice.ManageTokens)
	require.Len(t, alice.Tokens, 3)
	assert.Equal(t, "deploy", alice.Tokens[0].Name, "defaults.tokens first")
	assert.Equal(t, state.Some("Deploys"), alice.Tokens[0].Description)
	assert.Equal(t, "ci", alice.Tokens[1].Name)
	assert.Equal(t, 720*time.Hour, alice.Tokens[1].RotateAfter)
	assert.Equal(t, 30*24*time.Hour, alice.Tokens[2].RotateAfter)
	assert.Equal(t, state.Some(state.Meta{"purpose": "ci"}), alice.Tokens[1].Meta)
	assert.True(t, alice.Tokens[2].Description.Absent())

	bob := d.Users[1]
	assert.True(t, bob.Image.IsNull(), "the user's null wins over the default")
	assert.Equal(t, state.Some("Unnamed"), bob.Name)
	assert.True(t, bob.ManageTokens)
	assert.Empty(t, bob.Tokens, "defaultTokens: false and tokens: []: revoke all owned tokens")
	assert.Equal(t, 1000.0, bob.Limits.Value()["conversations"])
	assert.Equal(t, 10.0, bob.Limits.Value()["database"].(map[string]any)["files"])
	assert.Equal(t, map[string]any{"maxFileSize": 10485760.0}, bob.Limits.Value()["file"], "from defaults")
	att, has := bob.Limits.Value()["attachment"]
	assert.True(t, has && att == nil, "defaults' attachment: null is declared")

	carol := d.Users[2]
	assert.True(t, carol.ManageTokens, "no tokens of its own: defaults.tokens")
	require.Len(t, carol.Tokens, 1)
	assert.Equal(t, "deploy", carol.Tokens[0].Name)
	assert.False(t, carol.MetaExact)
	assert.Equal(t, state.Identity{Kind: state.ByEmail, Value: "carol@acme.test"}, carol.Identity())

	dana := d.Users[3]
	assert.Equal(t, state.Identity{Kind: state.ByID, Value: "cm_dana01"}, dana.Identity(), "id before externalId")
	assert.True(t, dana.Email.IsNull(), "email: null clears it under an id")
	assert.Equal(t, "cus_dana", dana.Meta.Value()["stripeCustomerId"], "an externalId under an id is enforced in meta")

	erin := d.Users[4]
	assert.Equal(t, state.Identity{Kind: state.ByExternalID, Value: "cus_erin"}, erin.Identity())
	assert.True(t, erin.Email.Absent(), "no email: unmanaged")
	assert.Equal(t, "cus_erin", erin.Meta.Value()["stripeCustomerId"], "created with its external id")
	assert.Equal(t, "standard", erin.Meta.Value()["plan"], "with the defaults' meta")
}

func TestDefaultsDeepMerge(t *testing.T) {
	d := load(t, `
version: 1
owner: acme
defaults:
  name: Default
  meta: { plan: standard, nested: { a: 1, b: 2 }, list: [1, 2] }
  limits: { conversations: 1000, database: { files: 5, records: 7 } }
  metaMode: exact
users:
  - email: a@acme.test
    meta: { team: x, nested: { b: 3 }, list: [9] }
    limits: { tokens: 5, database: { files: 6 } }
    metaMode: merge
  - email: b@acme.test
    name: null
    meta: null
    limits: null
`, nil)
	a, b := d.Users[0], d.Users[1]
	assert.Equal(t, state.Some("Default"), a.Name)
	assert.Equal(t, state.Meta{"plan": "standard", "team": "x", "nested": map[string]any{"a": 1.0, "b": 3.0}, "list": []any{9.0}}, a.Meta.Value())
	assert.Equal(t, state.Limits{"tokens": 5.0, "conversations": 1000.0,
		"database": map[string]any{"files": 6.0, "records": 7.0}}, a.Limits.Value())
	assert.False(t, a.MetaExact, "the user's metaMode wins over defaults")
	assert.True(t, b.MetaExact)
	assert.True(t, b.Name.IsNull())
	assert.True(t, b.Meta.IsNull())
	assert.True(t, b.Limits.IsNull())

	// Users must not share the defaults' maps.
	d2 := load(t, "version: 1\nowner: acme\ndefaults: {meta: {n: {x: 1}}}\nusers: [{email: a@acme.test}, {email: b@acme.test}]\n", nil)
	d2.Users[0].Meta.Value()["n"].(map[string]any)["x"] = "changed"
	assert.Equal(t, 1.0, d2.Users[1].Meta.Value()["n"].(map[string]any)["x"])
}

func TestAbsentNullAndSet(t *testing.T) {
	d := load(t, `
version: 1
owner: acme
users:
  - email: a@acme.test
    name: A
    description: null
    limits: { tokens: null, database: null }
`, nil)
	u := d.Users[0]
	assert.True(t, u.Name.IsSet())
	assert.True(t, u.Description.IsNull())
	assert.True(t, u.Image.Absent())
	assert.True(t, u.Meta.Absent())
	l := u.Limits.Value()
	assert.Equal(t, state.Limits{"tokens": nil, "database": nil}, l)
	assert.False(t, u.ManageTokens)
	assert.False(t, d.PruneUsers)
}

func TestEnvExpansion(t *testing.T) {
	d := load(t, `
version: ${VERSION}
owner: ${OWNER}
prune: { users: "${PRUNE}" }
users:
  - email: ${USER}@acme.test
    name: "${NAME:-Nobody}"
    description: price is $${AMOUNT} and ${EMPTY:-fallback}
    meta:
      n: ${N}
      q: "${N}"
      lit: $${X}
      s: ${S}
    limits: { tokens: "${N}", conversations: "${N}" }
    tokens:
      - name: ci
        rotateAfter: ${ROT:-30d}
`, env("VERSION", "1", "OWNER", "acme", "PRUNE", "true", "USER", "alice", "EMPTY", "", "N", "42", "S", "hello"))
	assert.Equal(t, "acme", d.Owner)
	assert.True(t, d.PruneUsers)
	u := d.Users[0]
	assert.Equal(t, "alice@acme.test", u.Email.Value())
	assert.Equal(t, state.Some("Nobody"), u.Name)
	assert.Equal(t, state.Some("price is ${AMOUNT} and fallback"), u.Description)
	assert.Equal(t, state.Meta{"n": 42.0, "q": "42", "lit": "${X}", "s": "hello"}, u.Meta.Value())
	assert.Equal(t, 42.0, u.Limits.Value()["tokens"])
	assert.Equal(t, 42.0, u.Limits.Value()["conversations"])
	assert.Equal(t, 30*24*time.Hour, u.Tokens[0].RotateAfter)
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "720h": 720 * time.Hour, "1d12h": 36 * time.Hour,
		"90m": 90 * time.Minute, "1.5h": 90 * time.Minute, "1h30m": 90 * time.Minute,
	} {
		got, err := parseDuration(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "-1d", "1d-1h", "30", "0", "0d", "-5m", "1w", "30x", "1e9d", "99999999999999999999d", "d1h"} {
		_, err := parseDuration(in)
		assert.Error(t, err, in)
	}
}

func TestSeveralFilesAndDirectories(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	write("conf/b.yml", "version: 1\nowner: acme\nmetaMode: exact\nusers: [{email: b@acme.test}]\n")
	write("conf/a.yaml", "version: 1\nowner: acme\nprune: {users: true}\ndefaults: {name: A-team}\nusers: [{email: a@acme.test}]\n")
	write("conf/notes.txt", "not yaml")
	write("conf/.hidden.yaml", "garbage: [")
	write("conf/sub/c.yaml", "garbage: [")
	extra := write("extra.yaml", "version: 1\nowner: acme\nusers: [{email: c@acme.test}]\n")

	d, err := Load([]string{filepath.Join(dir, "conf"), extra, filepath.Join(dir, "conf", "a.yaml")}, nil)
	require.NoError(t, err)
	assert.True(t, d.PruneUsers, "one file setting prune is enough")
	var emails []string
	for _, u := range d.Users {
		emails = append(emails, u.Email.Value())
	}
	assert.Equal(t, []string{"a@acme.test", "b@acme.test", "c@acme.test"}, emails, "lexical order in a directory, then the next path; a file named twice is read once")
	assert.Equal(t, state.Some("A-team"), d.Users[0].Name)
	assert.True(t, d.Users[1].Name.Absent(), "defaults apply to their own file only")
	assert.True(t, d.Users[1].MetaExact)
	assert.False(t, d.Users[2].MetaExact, "the top-level metaMode applies to its own file only")
}

func TestAnchorsAndAliasesWork(t *testing.T) {
	d := load(t, `
version: 1
owner: acme
users:
  - email: a@acme.test
    meta: &common { plan: gold }
    limits: &lim { tokens: 3 }
  - email: b@acme.test
    meta: *common
    limits: *lim
`, nil)
	assert.Equal(t, d.Users[0].Meta, d.Users[1].Meta)
	assert.Equal(t, d.Users[0].Limits, d.Users[1].Limits)
}

func TestErrorsType(t *testing.T) {
	_, err := LoadBytes("x.yaml", []byte("version: 2\nowner: acme\n"), nil)
	var errs Errors
	require.True(t, errors.As(err, &errs))
	require.Len(t, errs, 1)
	assert.Equal(t, state.Pos{File: "x.yaml", Line: 1, Column: 10}, errs[0].Pos)
	assert.True(t, strings.HasPrefix(err.Error(), "x.yaml:1:10: "))
}

// TestMetaIsInNormalizedForm checks that meta comes out exactly as state.NormalizeMeta
// would give it, which the loader produces directly for speed.
func TestMetaIsInNormalizedForm(t *testing.T) {
	d := load(t, `
version: 1
owner: acme
users:
  - email: a@acme.test
    meta:
      i: 3
      big: 18446744073709551615
      hex: 0x1F
      f: 1.5
      neg: -0.0
      b: true
      n: null
      s: text
      date: 2024-01-01
      l: [1, {x: 2}]
      m: {a: {b: [true]}}
`, nil)
	m := d.Users[0].Meta.Value()
	norm, err := state.NormalizeMeta(map[string]any(m))
	require.NoError(t, err)
	assert.Equal(t, norm, map[string]any(m))
	assert.Equal(t, 31.0, m["hex"])
	assert.Equal(t, "2024-01-01", m["date"])
}

func TestTestdataExamples(t *testing.T) {
	d, err := Load([]string{"testdata/minimal.yaml"}, nil)
	require.NoError(t, err)
	assert.Len(t, d.Users, 1)

	d, err = Load([]string{"testdata/multi"}, env("LEAD_TOKENS", "25"))
	require.NoError(t, err)
	assert.True(t, d.PruneUsers)
	require.Len(t, d.Users, 3)
	assert.Equal(t, "lead@acme.test", d.Users[1].Email.Value())
	assert.Equal(t, 25.0, d.Users[1].Limits.Value()["tokens"])
	assert.Equal(t, 1000.0, d.Users[1].Limits.Value()["conversations"])
	assert.Equal(t, state.Meta{"team": "support"}, d.Users[2].Meta.Value())
	assert.True(t, d.Users[2].MetaExact)
	assert.False(t, d.Users[0].MetaExact)
	assert.Equal(t, "testdata/multi/20-support.yml", d.Users[2].Pos.File)
}

// TestInternationalEmailsAreAccepted: refusing look-alikes and invisible characters does
// not refuse addresses in other scripts, or combining accents.
func TestInternationalEmailsAreAccepted(t *testing.T) {
	for _, email := range []string{"zoë@acme.test", "Zoe\u0308@acme.test", "δοκιμή@παράδειγμα.δοκιμή", "用户@例子.广告", "o'neil+ci@acme.test"} {
		d := load(t, "version: 1\nowner: acme\nusers:\n  - email: \""+email+"\"\n", nil)
		require.Len(t, d.Users, 1, email)
		assert.Equal(t, email, d.Users[0].Email.Value())
	}
}

// TestAliasesAreUniqueAcrossFiles: like emails, a duplicate alias in another file is
// reported at its position, naming the first.
func TestAliasesAreUniqueAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.yaml")
	require.NoError(t, os.WriteFile(a, []byte("version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: shared\n  - email: c@acme.test\n    alias: c-only\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("version: 1\nowner: acme\nusers:\n  - email: b@acme.test\n    alias: shared\n"), 0o644))
	_, err := Load([]string{a, b}, nil)
	require.Error(t, err)
	assert.Equal(t, b+`:5:12: duplicate alias "shared": `+a+`:5:12 already declares it (an alias is unique per partner account); give one of the two users another alias`, err.Error())

	d, err := Load([]string{a}, env("X", "y"))
	require.NoError(t, err)
	assert.Equal(t, []string{"shared", "c-only"}, []string{d.Users[0].Alias, d.Users[1].Alias})
	d = load(t, "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: ${A:-from-env}\n  - email: b@acme.test\n", nil)
	assert.Equal(t, "from-env", d.Users[0].Alias)
	assert.Equal(t, "", d.Users[1].Alias, "no alias declared")
}

func TestPruneUsersRelease(t *testing.T) {
	d := load(t, "version: 1\nowner: acme\nprune: { users: release }\nusers: [{email: a@acme.test}]\n", nil)
	assert.True(t, d.ReleaseUsers)
	assert.False(t, d.PruneUsers, "release deletes nothing")
	d = load(t, "version: 1\nowner: acme\nprune: { users: true }\nusers: [{email: a@acme.test}]\n", nil)
	assert.True(t, d.PruneUsers)
	assert.False(t, d.ReleaseUsers)

	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	require.NoError(t, os.WriteFile(a, []byte("version: 1\nowner: acme\nprune: {users: release}\nusers: [{email: a@acme.test}]\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("version: 1\nowner: acme\nprune: {users: true}\nusers: [{email: b@acme.test}]\n"), 0o644))
	_, err := Load([]string{a, b}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), b+`:3:16: prune.users is true here but release at `+a+`:3:16: the files that set prune.users must agree`)
}

// TestDefaultTokens: defaults.tokens are every user's, merged by name with the user's
// own (the user's values win field by field, meta key by key); defaultTokens: false
// opts a user out.
func TestDefaultTokens(t *testing.T) {
	d := load(t, `
version: 1
owner: acme
defaults:
  tokens:
    - name: ci
      description: CI pipeline
      meta: { purpose: ci, team: platform }
      rotateAfter: 30d
users:
  - email: a@acme.test
  - email: b@acme.test
    tokens:
      - name: ci
        description: B's own pipeline
        meta: { team: b }
      - name: ops
  - email: c@acme.test
    tokens:
      - name: ci
        rotateAfter: null
  - email: d@acme.test
    defaultTokens: false
  - email: e@acme.test
    defaultTokens: false
    tokens: [{name: own}]
`, nil)
	require.Len(t, d.Users, 5)
	a, b, c, dd, e := d.Users[0], d.Users[1], d.Users[2], d.Users[3], d.Users[4]

	require.True(t, a.ManageTokens, "defaults.tokens manage the tokens of a user without its own")
	require.Len(t, a.Tokens, 1)
	assert.Equal(t, "ci", a.Tokens[0].Name)
	assert.Equal(t, state.Some("CI pipeline"), a.Tokens[0].Description)
	assert.Equal(t, state.Meta{"purpose": "ci", "team": "platform"}, a.Tokens[0].Meta.Value())
	assert.Equal(t, 30*24*time.Hour, a.Tokens[0].RotateAfter)

	require.Len(t, b.Tokens, 2)
	assert.Equal(t, "ci", b.Tokens[0].Name)
	assert.Equal(t, state.Some("B's own pipeline"), b.Tokens[0].Description, "the user's value wins")
	assert.Equal(t, state.Meta{"purpose": "ci", "team": "b"}, b.Tokens[0].Meta.Value(), "meta merges key by key")
	assert.Equal(t, 30*24*time.Hour, b.Tokens[0].RotateAfter, "what the user leaves out comes from the default")
	assert.Equal(t, 14, b.Tokens[0].Pos.Line, "the user's declaration is where the token is")
	assert.Equal(t, "ops", b.Tokens[1].Name)

	require.Len(t, c.Tokens, 1)
	assert.Zero(t, c.Tokens[0].RotateAfter, "rotateAfter: null overrides the default: never rotate")

	assert.False(t, dd.ManageTokens, "opted out and no tokens of its own: not managed")
	assert.True(t, e.ManageTokens)
	require.Len(t, e.Tokens, 1)
	assert.Equal(t, "own", e.Tokens[0].Name)

	// Each user has its own copy of a default's meta.
	a.Tokens[0].Meta.Value()["purpose"] = "changed"
	assert.Equal(t, "ci", d.Users[2].Tokens[0].Meta.Value()["purpose"])
}
