package plan

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run `go test ./internal/plan -run Golden -update` to create it")
	assert.Equal(t, string(want), string(got), "golden %s differs; rerun with -update and review the diff", name)
}

const gOwner = "acme-platform"

func gMeta(kv ...any) state.Opt[state.Meta] {
	return state.Some(meta(append([]any{state.OwnerKey, gOwner}, kv...)...))
}

// goldenScenario has every action kind, a user declared by id whose email changes
// (one update), a foreign user (unsafe without --takeover) and one unchanged user.
func goldenScenario() (state.Desired, state.Actual, Options) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	created := func(age time.Duration) int64 { return now.Add(-age).UnixMilli() }
	user := func(id, email string, m state.Opt[state.Meta], f func(*state.User)) state.User {
		u := state.User{ID: id, CreatedAt: created(100 * day), UpdatedAt: created(10 * day), Email: state.Some(email),
			Name: state.Null[string](), Description: state.Null[string](), Image: state.Null[string](), Meta: m,
			Limits: state.Null[state.Limits]()}
		if f != nil {
			f(&u)
		}
		return u
	}
	token := func(id, name string, m state.Opt[state.Meta], age time.Duration) state.Token {
		return state.Token{ID: id, CreatedAt: created(age), UpdatedAt: created(age), Name: state.Some(name),
			Description: state.Null[string](), Meta: m}
	}
	d := state.Desired{Owner: gOwner, PruneUsers: true, Users: []state.DesiredUser{
		{
			Email: state.Some("alice@acme.test"), Alias: "alice-eu", Name: state.Some("Alice Doe"),
			Description:  state.Some("Sales team sandbox\nOwned by the EU office"),
			Meta:         state.Some(meta("team", "sales", "region", "eu")),
			Limits:       state.Some(state.Limits{"conversations": 5000.0, "database": map[string]any{"files": 100.0}}),
			ManageTokens: true, Tokens: []state.DesiredToken{
				{Name: "deploy"},
				{Name: "ci", Description: state.Some("CI pipeline"), Meta: state.Some(meta("purpose", "ci"))},
			},
		},
		{
			Email: state.Some("bob@acme.test"), Alias: "bob-support", Name: state.Some("Robert Roe"),
			Description:  state.Some("Support sandbox\nTier 2\nOn call"),
			Meta:         state.Some(meta("team", "support")),
			Limits:       state.Some(state.Limits{"tokens": 200000.0}),
			ManageTokens: true, Tokens: []state.DesiredToken{
				{Name: "ci", RotateAfter: 30 * day},
				{Name: "ops", Description: state.Some("Ops runbooks")},
			},
		},
		{Email: state.Some("carol@acme.test"), Name: state.Some("Carol"), ManageTokens: true, Tokens: []state.DesiredToken{{Name: "manual"}}},
		{Email: state.Some("erin@acme.test"), Name: state.Some("Erin")},
		{ID: "u_frank", Email: state.Some("frank@acme.test")},
		{Email: state.Some("gina@acme.test"), Alias: "gina", Name: state.Some("Gina")},
	}}
	a := state.Actual{
		Users: []state.User{
			user("u_bob", "bob@acme.test", gMeta("team", "sales", "costCenter", "cc-7"), func(u *state.User) {
				u.Name = state.Some("Bob Roe")
				u.Description = state.Some("Support sandbox\nTier 1\nOn call")
				u.Limits = state.Some(state.Limits{"tokens": 100000.0, "conversations": 10.0})
			}),
			user("u_carol", "carol@acme.test", state.Some(meta("createdBy", "console")), func(u *state.User) { u.Name = state.Some("Carol") }),
			user("u_dave", "dave@acme.test", gMeta(), nil),
			user("u_erin", "erin@acme.test", state.Some(meta(state.OwnerKey, "other-team")), nil),
			user("u_frank", "frank.old@acme.test", gMeta(), nil),
			user("u_gina", "gina@acme.test", gMeta(), func(u *state.User) { u.Name = state.Some("Gina") }),
		},
		Tokens: map[string][]state.Token{
			"u_bob": {
				token("t_bob_ci", "ci", gMeta(), 45*day),
				// A successor a crashed run created and never confirmed.
				token("t_bob_ci_pending", "ci", gMeta(state.NonceKey, "n1", state.PendingKey, true), day),
				token("t_bob_ops", "ops", gMeta(), 5*day),
				token("t_bob_legacy", "legacy", gMeta(), 200*day),
			},
			"u_carol": {token("t_carol_manual", "manual", state.Null[state.Meta](), 3*day)},
		},
		// bob's alias was removed behind cbk-sync's back; gina's is where it should be.
		Aliases: map[string]string{"bob-support": "", "gina": "u_gina"},
	}
	return d, a, DefaultOptions(now)
}

// identityScenario names users by each identity: a create by externalId without an
// email, an adoption found by externalId, an email changed under an id (one update),
// and, by email, a create while an owned user is left undeclared (what an email change
// looks like, warned about), beside an owned user without an email.
func identityScenario() (state.Desired, state.Actual, Options) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	user := func(id, email string, m state.Opt[state.Meta]) state.User {
		u := state.User{ID: id, CreatedAt: 1, UpdatedAt: 1, Name: state.Null[string](), Meta: m}
		if email != "" {
			u.Email = state.Some(email)
		} else {
			u.Email = state.Null[string]()
		}
		return u
	}
	d := state.Desired{Owner: gOwner, Users: []state.DesiredUser{
		{ExternalID: "cus_42", Name: state.Some("Hank"), Meta: state.Some(meta("externalId", "cus_42"))},
		{ExternalID: "cus_7", Email: state.Some("ivy@acme.test"), Meta: state.Some(meta("externalId", "cus_7"))},
		{ID: "u_jo", Email: state.Some("jo.new@acme.test")},
		{Email: state.Some("kim.new@acme.test"), Name: state.Some("Kim")},
	}}
	a := state.Actual{Tokens: map[string][]state.Token{}, Users: []state.User{
		user("u_ivy", "ivy@acme.test", state.Some(meta("externalId", "cus_7"))),
		user("u_jo", "jo@acme.test", gMeta()),
		user("u_kim", "kim@acme.test", gMeta()),
		user("u_nomail", "", gMeta()),
	}}
	return d, a, DefaultOptions(now)
}

// unsafeScenario deletes 4 of 12 owned users: over the 25% cap.
func unsafeScenario() (state.Desired, state.Actual, Options) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	d := state.Desired{Owner: gOwner, PruneUsers: true}
	a := state.Actual{Tokens: map[string][]state.Token{}}
	for i := range 12 {
		email := fmt.Sprintf("user%02d@acme.test", i)
		a.Users = append(a.Users, state.User{ID: fmt.Sprintf("u_%02d", i), CreatedAt: 1, UpdatedAt: 1, Email: state.Some(email), Meta: gMeta()})
		if i >= 4 {
			d.Users = append(d.Users, state.DesiredUser{Email: state.Some(email)})
		}
	}
	return d, a, DefaultOptions(now)
}

func TestGoldenScenarioHasEverything(t *testing.T) {
	d, a, o := goldenScenario()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	s := p.Summary()
	for _, act := range Actions {
		if act == UserRelease || act == TokenRelease {
			continue // prune.users is true here; the release golden has them
		}
		assert.Positive(t, s.Count(act), act.String())
	}
	assert.False(t, p.Safety.Safe)
	assertConverges(t, d, a, &p, o)
}

func renderAll(t *testing.T, p *Plan) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var b bytes.Buffer
	require.NoError(t, RenderText(&b, p, TextOptions{}))
	out["txt"] = bytes.Clone(b.Bytes())
	b.Reset()
	require.NoError(t, RenderText(&b, p, TextOptions{Color: true}))
	out["color.txt"] = bytes.Clone(b.Bytes())
	b.Reset()
	require.NoError(t, RenderJSON(&b, p))
	out["json"] = bytes.Clone(b.Bytes())
	b.Reset()
	require.NoError(t, RenderMarkdown(&b, p))
	out["md"] = bytes.Clone(b.Bytes())
	return out
}

// goldenSecretsTo is where sync would say the secrets of each golden plan go.
var goldenSecretsTo = map[string]*SecretsDestination{
	"plan":    {Kind: "age", Location: "chatbotkit/secrets/", Recipients: 2},
	"hostile": {Kind: "exec", Location: "sh -c 'vault kv put -\x1b[2J'"},
}

func TestGolden(t *testing.T) {
	for name, scenario := range map[string]func() (state.Desired, state.Actual, Options){
		"plan":   goldenScenario,
		"unsafe": unsafeScenario,
		// Values built to forge lines or drive the terminal, shown escaped.
		"hostile":  hostileScenario,
		"identity": identityScenario,
		// prune.users: release, with an update beside it.
		"release": releaseGoldenScenario,
	} {
		t.Run(name, func(t *testing.T) {
			d, a, o := scenario()
			p, err := Compute(d, a, o)
			require.NoError(t, err)
			p.SecretsTo = goldenSecretsTo[name]
			for ext, got := range renderAll(t, &p) {
				golden(t, name+"."+ext, got)
			}
		})
	}
}

func TestRenderEmptyPlan(t *testing.T) {
	p, err := Compute(state.Desired{Owner: gOwner}, state.Actual{}, DefaultOptions(time.Now()))
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, RenderText(&b, &p, TextOptions{}))
	assert.Equal(t, "No changes. Remote state matches the configuration.\n", b.String())

	b.Reset()
	require.NoError(t, RenderJSON(&b, &p))
	assert.NotContains(t, b.String(), "null", "arrays are never null")
	var v map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &v))
	assert.Equal(t, true, v["safe"])

	b.Reset()
	require.NoError(t, RenderMarkdown(&b, &p))
	assert.Contains(t, b.String(), "No changes.")
	assert.NotContains(t, b.String(), "<details>")
}

func TestRenderJSONShape(t *testing.T) {
	d, a, o := goldenScenario()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, RenderJSON(&b, &p))
	var v struct {
		FormatVersion string           `json:"format_version"`
		Summary       map[string]int   `json:"summary"`
		Actions       []map[string]any `json:"actions"`
		Safe          bool             `json:"safe"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &v))
	assert.Equal(t, "2", v.FormatVersion)
	assert.Len(t, v.Summary, len(Actions))
	names := map[string]bool{}
	for _, a := range Actions {
		names[a.String()] = true
	}
	for _, act := range v.Actions {
		assert.True(t, names[act["action"].(string)], act["action"])
		for _, k := range []string{"action", "email", "user_id", "token_name", "token_id", "reason", "fields"} {
			assert.Contains(t, act, k)
		}
	}
	assert.False(t, v.Safe)
}

func TestRenderersShowNoSecrets(t *testing.T) {
	// Plans never hold secrets; a secret-looking meta value is shown like any other
	// value, so this pins that renderers do not invent any secret of their own.
	d, a, o := goldenScenario()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	for ext, got := range renderAll(t, &p) {
		assert.NotContains(t, string(got), "sk-", ext)
	}
}

func TestMarkdownFenceSurvivesBackticks(t *testing.T) {
	d := state.Desired{Owner: gOwner, Users: []state.DesiredUser{{Email: state.Some("a@x.test"), Name: state.Some("```evil")}}}
	p, err := Compute(d, state.Actual{}, DefaultOptions(time.Now()))
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, RenderMarkdown(&b, &p))
	assert.Contains(t, b.String(), "````diff\n")
	assert.True(t, strings.HasSuffix(strings.TrimSpace(b.String()), "</details>"))
}

func TestSavedRoundTrip(t *testing.T) {
	d, a, o := goldenScenario()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, WriteSaved(&b, NewSaved(d, a, o, &p)))
	first := bytes.Clone(b.Bytes())

	saved, err := ReadSaved(bytes.NewReader(first))
	require.NoError(t, err)
	b.Reset()
	require.NoError(t, WriteSaved(&b, saved))
	assert.Equal(t, string(first), b.String(), "write(read(write(p))) == write(p)")
	got := saved.Plan
	assert.Equal(t, describePlan(&p), describePlan(got))
	assert.Equal(t, p.Fingerprint, got.Fingerprint)
	assert.Equal(t, p.TokenUsers, got.TokenUsers)
	assert.Equal(t, p.Safety, got.Safety)
	for i, u := range p.Users {
		for j, c := range u.Changes {
			assert.Equal(t, wire(t, c), wire(t, got.Users[i].Changes[j]), describe(c))
			if c.UserBody != nil {
				assert.Equal(t, c.UserBody.MetaMerge, got.Users[i].Changes[j].UserBody.MetaMerge)
			}
		}
	}
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(first, &top))
	assert.JSONEq(t, `"cbk-sync-plan"`, string(top["kind"]))
	assert.JSONEq(t, `"3"`, string(top["format_version"]))
}

func TestReadSavedIsStrict(t *testing.T) {
	d, a, o := goldenScenario()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, WriteSaved(&b, NewSaved(d, a, o, &p)))
	good := b.String()

	for name, tc := range map[string]struct{ in, msg string }{
		"wrong kind":      {strings.Replace(good, `"kind": "cbk-sync-plan"`, `"kind": "terraform"`, 1), `kind is "terraform"`},
		"wrong version":   {strings.Replace(good, `"format_version": "3"`, `"format_version": "9"`, 1), `format_version "9" is not supported`},
		"older version":   {strings.Replace(good, `"format_version": "3"`, `"format_version": "2"`, 1), `format_version "2" was written by an older cbk-sync, which named users by email alone`},
		"unknown key":     {strings.Replace(good, `"owner":`, `"bogus": 1, "owner":`, 1), `unknown field "bogus"`},
		"owner differs":   {strings.Replace(good, `"owner": "`+gOwner+`"`, `"owner": "other"`, 1), `owner "other" is not the plan's`},
		"trailing data":   {good + "{}", "unexpected data"},
		"not json":        {"hello", "not a cbk-sync plan"},
		"no plan":         {`{"format_version":"3","kind":"cbk-sync-plan","options":{},"desired":{},"remote":{}}`, "no plan"},
		"no desired":      {`{"format_version":"3","kind":"cbk-sync-plan","options":{},"remote":{},"plan":{}}`, "no desired"},
		"unknown action":  {strings.Replace(good, `"action": "user_create"`, `"action": "user_explode"`, 1), `unknown action "user_explode"`},
		"no fingerprint":  {strings.Replace(good, `"fingerprint": "`+p.Fingerprint+`"`, `"fingerprint": ""`, 1), "no fingerprint"},
		"missing body":    {strings.Replace(good, `"user_body"`, `"user_body_x"`, 1), "unknown field"},
		"truncated input": {good[:len(good)/2], "saved plan"},
		// These were read without a word before, and the misspelt limit dropped.
		"bad alias":        {strings.ReplaceAll(good, `"alias": "alice-eu"`, `"alias": "Not/An/Alias"`), `invalid alias "Not/An/Alias"`},
		"fractional limit": {strings.Replace(good, `"limits": {`, `"limits": {"file": {"maxFileSize": 1.5}, `, 1), `limits.file.maxFileSize must be a whole number`},
		"key case":         {strings.Replace(good, `"owner":`, `"Owner":`, 1), `unknown key "Owner"`},
		"token no user":    {`{"format_version":"3","kind":"cbk-sync-plan","options":{},"desired":{"owner":"o"},"remote":{},"plan":{"owner":"o","fingerprint":"f","users":[{"identity":{"kind":"email","value":"e"},"email":"e","changes":[{"action":"token_revoke","email":"e","token_id":"t","reason":""}]}]}}`, "token_revoke has no user_id"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadSaved(strings.NewReader(tc.in))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestFingerprintOrderIndependentAndSensitive(t *testing.T) {
	_, a, _ := goldenScenario()
	base := Fingerprint(a)
	assert.Len(t, base, 64)

	// Reordering users, token lists and meta map construction changes nothing.
	r := state.Actual{Users: reversed(a.Users), Tokens: map[string][]state.Token{}}
	for id, ts := range a.Tokens {
		r.Tokens[id] = reversed(ts)
	}
	assert.Equal(t, base, Fingerprint(r))

	mutations := map[string]func(a *state.Actual){
		"user updatedAt":  func(a *state.Actual) { a.Users[0].UpdatedAt++ },
		"user name":       func(a *state.Actual) { a.Users[1].Name = state.Some("x") },
		"null to absent":  func(a *state.Actual) { a.Users[2].Description = state.Opt[string]{} },
		"null to empty":   func(a *state.Actual) { a.Users[2].Description = state.Some("") },
		"user meta value": func(a *state.Actual) { a.Users[0].Meta.Value()["team"] = "x" },
		"user limits":     func(a *state.Actual) { a.Users[0].Limits = state.Some(state.Limits{}) },
		"unknown limit key": func(a *state.Actual) {
			a.Users[0].Limits = state.Some(state.Limits{"foo": map[string]any{"bar": 1.0}})
		},
		"unknown nested limit value": func(a *state.Actual) {
			a.Users[0].Limits = state.Some(state.Limits{"foo": map[string]any{"bar": 2.0}})
		},
		"file.maxFileSize": func(a *state.Actual) {
			a.Users[0].Limits = state.Some(state.Limits{"file": map[string]any{"maxFileSize": 1.0}})
		},
		"user removed":      func(a *state.Actual) { a.Users = a.Users[1:] },
		"token updatedAt":   func(a *state.Actual) { a.Tokens["u_bob"][0].UpdatedAt++ },
		"token meta":        func(a *state.Actual) { a.Tokens["u_carol"][0].Meta = state.Some(state.Meta{}) },
		"token removed":     func(a *state.Actual) { a.Tokens["u_bob"] = a.Tokens["u_bob"][1:] },
		"token list read":   func(a *state.Actual) { a.Tokens["u_gina"] = []state.Token{} },
		"token list unread": func(a *state.Actual) { delete(a.Tokens, "u_carol") },
	}
	// The alias lookups are not part of it: an alias changes only by an update, which
	// moves the user's updatedAt, so a saved plan is still refused when one moved.
	_, noAliases, _ := goldenScenario()
	noAliases.Aliases = map[string]string{"bob-support": "u_bob"}
	assert.Equal(t, base, Fingerprint(noAliases))

	seen := map[string]string{base: "base"}
	for name, mutate := range mutations {
		_, c, _ := goldenScenario()
		mutate(&c)
		fp := Fingerprint(c)
		if prev, dup := seen[fp]; dup {
			t.Errorf("mutation %q gives the same fingerprint as %q", name, prev)
		}
		seen[fp] = name
	}
}
