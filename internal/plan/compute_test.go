package plan

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

const testOwner = "acme"

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ms(t time.Time) int64 { return t.UnixMilli() }

func meta(kv ...any) state.Meta {
	m := state.Meta{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func ownedMeta(kv ...any) state.Opt[state.Meta] {
	return state.Some(meta(append([]any{state.OwnerKey, testOwner}, kv...)...))
}

func remoteUser(id, email string, m state.Opt[state.Meta], mods ...func(*state.User)) state.User {
	u := state.User{ID: id, CreatedAt: ms(testNow.Add(-time.Hour)), UpdatedAt: ms(testNow.Add(-time.Hour)),
		Email: state.Some(email), Name: state.Null[string](), Description: state.Null[string](),
		Image: state.Null[string](), Meta: m, Limits: state.Null[state.Limits]()}
	for _, f := range mods {
		f(&u)
	}
	return u
}

func remoteToken(id, name string, m state.Opt[state.Meta], age time.Duration) state.Token {
	return state.Token{ID: id, CreatedAt: ms(testNow.Add(-age)), UpdatedAt: ms(testNow.Add(-age)),
		Name: state.Some(name), Description: state.Null[string](), Meta: m}
}

// describe renders a change compactly for table expectations:
// "action email[/token] [field,field]".
func describe(c Change) string {
	s := c.Action.String() + " " + c.Email
	if c.TokenName != "" {
		s += "/" + c.TokenName
	}
	if len(c.Fields) > 0 {
		names := make([]string, len(c.Fields))
		for i, f := range c.Fields {
			names[i] = f.Field
		}
		s += " [" + strings.Join(names, ",") + "]"
	}
	return s
}

func describePlan(p *Plan) []string {
	out := []string{}
	for _, u := range p.Users {
		for _, c := range u.Changes {
			out = append(out, describe(c))
		}
	}
	return out
}

func wire(t testing.TB, c Change) string {
	t.Helper()
	var b []byte
	var err error
	switch {
	case c.UserBody != nil:
		b, err = c.UserBody.WireJSON()
	case c.TokenBody != nil:
		b, err = c.TokenBody.WireJSON()
	default:
		return ""
	}
	require.NoError(t, err)
	return string(b)
}

func findChange(p *Plan, key string) (Change, bool) {
	for _, u := range p.Users {
		for _, c := range u.Changes {
			k := c.Action.String() + " " + c.Email
			if c.TokenName != "" {
				k += "/" + c.TokenName
			}
			if k == key {
				return c, true
			}
		}
	}
	return Change{}, false
}

type computeCase struct {
	name    string
	users   []state.DesiredUser
	prune   bool
	actual  state.Actual
	opts    func(*Options)
	want    []string          // describe() of every change, in plan order
	bodies  map[string]string // "action email[/token]" -> wire JSON of its body
	unsafe  []string          // substrings of the unsafe reasons (empty: safe)
	warn    []string          // substrings of warnings
	orphans []string          // emails
	err     error
}

func du(email string, mods ...func(*state.DesiredUser)) state.DesiredUser {
	u := state.DesiredUser{Email: state.Some(email)}
	for _, f := range mods {
		f(&u)
	}
	return u
}

func withName(n string) func(*state.DesiredUser) {
	return func(u *state.DesiredUser) { u.Name = state.Some(n) }
}

func withTokens(ts ...state.DesiredToken) func(*state.DesiredUser) {
	return func(u *state.DesiredUser) { u.ManageTokens = true; u.Tokens = ts }
}

func actual(users ...state.User) state.Actual {
	return state.Actual{Users: users, Tokens: map[string][]state.Token{}}
}

func withTokenList(a state.Actual, userID string, toks ...state.Token) state.Actual {
	if toks == nil {
		toks = []state.Token{}
	}
	a.Tokens[userID] = toks
	return a
}

func TestCompute(t *testing.T) {
	lim := func(tokens, conv float64) state.Limits {
		return state.Limits{"tokens": tokens, "conversations": conv}
	}
	cases := []computeCase{
		{
			name:   "declared and absent remotely is created with marker",
			users:  []state.DesiredUser{du("Alice@Acme.test", withName("Alice"), func(u *state.DesiredUser) { u.Meta = state.Some(meta("team", "sales")) })},
			actual: actual(),
			want:   []string{"user_create Alice@Acme.test [email,name,meta.cbkSyncOwner,meta.team]"},
			bodies: map[string]string{"user_create Alice@Acme.test": `{"email":"Alice@Acme.test","name":"Alice","meta":{"cbkSyncOwner":"acme","team":"sales"}}`},
		},
		{
			name: "created user gets every declared field, nulls included, and its tokens by name",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Description = state.Null[string]()
				u.Limits = state.Some(lim(5, 6))
			}, withTokens(state.DesiredToken{Name: "z"}, state.DesiredToken{Name: "ci", Description: state.Some("CI"), Meta: state.Some(meta("p", "ci"))}))},
			actual: actual(),
			want: []string{
				"user_create a@x.test [email,description,meta.cbkSyncOwner,limits.conversations,limits.tokens]",
				"token_create a@x.test/ci [description,meta.cbkSyncOwner,meta.p]",
				"token_create a@x.test/z [meta.cbkSyncOwner]",
			},
			bodies: map[string]string{
				"user_create a@x.test":     `{"email":"a@x.test","description":null,"meta":{"cbkSyncOwner":"acme"},"limits":{"tokens":5,"conversations":6}}`,
				"token_create a@x.test/ci": `{"name":"ci","description":"CI","meta":{"cbkSyncOwner":"acme","p":"ci"}}`,
			},
		},
		{
			name:   "owned and equal: no change; email case is not compared",
			users:  []state.DesiredUser{du("A@x.test", withName("A"))},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) { u.Name = state.Some("A") })),
			want:   []string{},
		},
		{
			// Unicode case folding maps the Kelvin sign U+212A onto "k": the declared
			// look-alike must not match, and adopt, the undeclared unmanaged kate@.
			name:   "a Kelvin-sign email is not the ASCII one: create, never adopt",
			users:  []state.DesiredUser{du("\u212aate@acme.test")},
			actual: actual(remoteUser("u1", "kate@acme.test", state.Null[state.Meta]())),
			want:   []string{"user_create \u212aate@acme.test [email,meta.cbkSyncOwner]"},
		},
		{
			name:   "a remote Kelvin-sign email does not match the declared ASCII one",
			users:  []state.DesiredUser{du("kate@acme.test")},
			actual: actual(remoteUser("u1", "\u212aate@acme.test", state.Null[state.Meta]())),
			want:   []string{"user_create kate@acme.test [email,meta.cbkSyncOwner]"},
		},
		{
			name:   "owned and drifted: update sends only drifted fields",
			users:  []state.DesiredUser{du("a@x.test", withName("New"), func(u *state.DesiredUser) { u.Image = state.Some("i.png") })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) { u.Name = state.Some("Old"); u.Image = state.Some("i.png") })),
			want:   []string{"user_update a@x.test [name]"},
			bodies: map[string]string{"user_update a@x.test": `{"name":"New"}`},
		},
		{
			name:   "absent desired field is unmanaged",
			users:  []state.DesiredUser{du("a@x.test")},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta("k", "v"), func(u *state.User) { u.Name = state.Some("Whatever"); u.Limits = state.Some(lim(1, 2)) })),
			want:   []string{},
		},
		{
			name:   "field missing from the remote answer is unknown and never updated",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Description = state.Some("D"); u.Limits = state.Some(lim(1, 1)) })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) { u.Description = state.Opt[string]{}; u.Limits = state.Opt[state.Limits]{} })),
			want:   []string{},
		},
		{
			name: "null desired equals remote null or empty string; clears a value",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Name = state.Null[string]()
				u.Description = state.Null[string]()
				u.Image = state.Null[string]()
			})},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) { u.Description = state.Some(""); u.Image = state.Some("x") })),
			want:   []string{"user_update a@x.test [image]"},
			bodies: map[string]string{"user_update a@x.test": `{"image":null}`},
		},
		{
			name:   "meta merge: only declared keys compared, sent as $update with marker",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Meta = state.Some(meta("team", "eu", "n", 3)) })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta("team", "us", "n", 3.0, "other", "kept"))),
			want:   []string{"user_update a@x.test [meta.team]"},
			bodies: map[string]string{"user_update a@x.test": `{"meta":{"$update":{"cbkSyncOwner":"acme","n":3,"team":"eu"}}}`},
		},
		{
			name:   "meta merge: declared null value equals a missing key",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Meta = state.Some(meta("gone", nil)) })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			want:   []string{},
		},
		{
			name:   "meta exact: extra remote keys drift, full meta sent",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Meta = state.Some(meta("team", "eu")); u.MetaExact = true })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta("team", "eu", "extra", 1.0))),
			want:   []string{"user_update a@x.test [meta.extra]"},
			bodies: map[string]string{"user_update a@x.test": `{"meta":{"cbkSyncOwner":"acme","team":"eu"}}`},
		},
		{
			name:   "meta exact: equal is no change",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Meta = state.Some(meta("team", "eu")); u.MetaExact = true })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta("team", "eu"))),
			want:   []string{},
		},
		{
			name:   "meta null in merge mode clears all but the marker",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Meta = state.Null[state.Meta]() })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta("a", "1", "b", "2"))),
			want:   []string{"user_update a@x.test [meta.a,meta.b]"},
			bodies: map[string]string{"user_update a@x.test": `{"meta":{"cbkSyncOwner":"acme"}}`},
		},
		{
			name: "limits: only declared sub-fields compared; remote laid under declared",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Limits = state.Some(state.Limits{"tokens": 10.0, "database": map[string]any{"files": 7.0}})
			})},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) {
				u.Limits = state.Some(state.Limits{"tokens": 5.0, "messages": 99.0,
					"database": map[string]any{"files": 1.0, "records": 3.0}})
			})),
			want:   []string{"user_update a@x.test [limits.database.files,limits.tokens]"},
			bodies: map[string]string{"user_update a@x.test": `{"limits":{"tokens":10,"messages":99,"database":{"records":3,"files":7}}}`},
		},
		{
			name: "limits: every remote key not declared survives an update, at any depth, known or unknown",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Limits = state.Some(state.Limits{"tokens": 10.0, "attachment": map[string]any{"maxFileSize": 2048.0}})
			})},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) {
				u.Limits = state.Some(state.Limits{"tokens": 5.0, "file": map[string]any{"maxFileSize": 1e6},
					"attachment": map[string]any{"maxFileSize": 1024.0, "kinds": []any{"pdf"}}, "foo": map[string]any{"bar": 1.5}})
			})),
			want: []string{"user_update a@x.test [limits.attachment.maxFileSize,limits.tokens]"},
			bodies: map[string]string{"user_update a@x.test": `{"limits":{"tokens":10,"file":{"maxFileSize":1000000},` +
				`"attachment":{"maxFileSize":2048,"kinds":["pdf"]},"foo":{"bar":1.5}}}`},
		},
		{
			name: "limits: a declared file section is created under a remote one that is missing or null",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Limits = state.Some(state.Limits{"file": map[string]any{"maxFileSize": 7.0}, "attachment": map[string]any{"maxFileSize": nil}})
			})},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) {
				u.Limits = state.Some(state.Limits{"attachment": nil, "foo": 1.0})
			})),
			want:   []string{"user_update a@x.test [limits.file.maxFileSize]"},
			bodies: map[string]string{"user_update a@x.test": `{"limits":{"file":{"maxFileSize":7},"attachment":{},"foo":1}}`},
		},
		{
			name: "limits: a declared null section clears a remote one; equal unknown keys do not drift",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Limits = state.Some(state.Limits{"file": nil, "tokens": 1.0})
			})},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) {
				u.Limits = state.Some(state.Limits{"tokens": 1.0, "file": map[string]any{"maxFileSize": 3.0}, "foo": map[string]any{"bar": 1.0}})
			})),
			want:   []string{"user_update a@x.test [limits.file]"},
			bodies: map[string]string{"user_update a@x.test": `{"limits":{"tokens":1,"foo":{"bar":1}}}`},
		},
		{
			name:   "limits: equal declared sub-fields are no change",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Limits = state.Some(state.Limits{"tokens": 5.0}) })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) { u.Limits = state.Some(lim(5, 100)) })),
			want:   []string{},
		},
		{
			name:   "limits null clears them",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Limits = state.Null[state.Limits]() })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) { u.Limits = state.Some(lim(5, 100)) })),
			want:   []string{"user_update a@x.test [limits]"},
			bodies: map[string]string{"user_update a@x.test": `{"limits":{}}`},
		},
		{
			name:   "limits null is met by an empty remote object",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Limits = state.Null[state.Limits]() })},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) { u.Limits = state.Some(state.Limits{}) })),
			want:   []string{},
		},
		{
			name: "limits: a declared null key is left out of a create, never sent as null",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Limits = state.Some(state.Limits{"tokens": nil, "messages": 3.0, "database": nil, "file": map[string]any{"maxFileSize": nil}})
			})},
			actual: actual(),
			want:   []string{"user_create a@x.test [email,meta.cbkSyncOwner,limits.database,limits.file.maxFileSize,limits.messages,limits.tokens]"},
			bodies: map[string]string{"user_create a@x.test": `{"email":"a@x.test","meta":{"cbkSyncOwner":"acme"},"limits":{"messages":3,"file":{}}}`},
		},
		{
			name: "limits: a declared null key is removed by an update, never sent as null; a remote null at a known key is dropped",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) {
				u.Limits = state.Some(state.Limits{"tokens": nil, "database": map[string]any{"files": nil}})
			})},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) {
				u.Limits = state.Some(state.Limits{"tokens": 5.0, "messages": nil, "database": map[string]any{"files": 1.0, "records": 2.0}})
			})),
			want:   []string{"user_update a@x.test [limits.database.files,limits.tokens]"},
			bodies: map[string]string{"user_update a@x.test": `{"limits":{"database":{"records":2}}}`},
		},
		{
			name:   "unmanaged user with declared email is adopted: marker merged, drift enforced",
			users:  []state.DesiredUser{du("a@x.test", withName("A"))},
			actual: actual(remoteUser("u1", "a@x.test", state.Some(meta("k", "v")), func(u *state.User) { u.Name = state.Some("B") })),
			want:   []string{"user_adopt a@x.test [name,meta.cbkSyncOwner]"},
			bodies: map[string]string{"user_adopt a@x.test": `{"name":"A","meta":{"$update":{"cbkSyncOwner":"acme"}}}`},
		},
		{
			name:   "adopt with nothing else drifted, remote meta null",
			users:  []state.DesiredUser{du("a@x.test")},
			actual: actual(remoteUser("u1", "a@x.test", state.Null[state.Meta]())),
			want:   []string{"user_adopt a@x.test [meta.cbkSyncOwner]"},
		},
		{
			name:   "adopt in exact mode sends the full meta",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.Meta = state.Some(meta("t", "x")); u.MetaExact = true })},
			actual: actual(remoteUser("u1", "a@x.test", state.Some(meta("t", "x", "old", "y")))),
			want:   []string{"user_adopt a@x.test [meta.cbkSyncOwner,meta.old]"},
			bodies: map[string]string{"user_adopt a@x.test": `{"meta":{"cbkSyncOwner":"acme","t":"x"}}`},
		},
		{
			name:   "adopt with unknown remote meta writes the marker",
			users:  []state.DesiredUser{du("a@x.test")},
			actual: actual(remoteUser("u1", "a@x.test", state.Opt[state.Meta]{})),
			want:   []string{"user_adopt a@x.test [meta.cbkSyncOwner]"},
			bodies: map[string]string{"user_adopt a@x.test": `{"meta":{"$update":{"cbkSyncOwner":"acme"}}}`},
		},
		{
			name:   "foreign user is refused without --takeover, tokens untouched even if unread",
			users:  []state.DesiredUser{du("a@x.test", withName("A"), withTokens(state.DesiredToken{Name: "ci"}))},
			actual: actual(remoteUser("u1", "a@x.test", state.Some(meta(state.OwnerKey, "other")))),
			want:   []string{},
			unsafe: []string{`user a@x.test is owned by "other"; pass --takeover to adopt it`},
		},
		{
			name:   "foreign user with --takeover is adopted, marker rewritten",
			users:  []state.DesiredUser{du("a@x.test")},
			actual: actual(remoteUser("u1", "a@x.test", state.Some(meta(state.OwnerKey, "other")))),
			opts:   func(o *Options) { o.Takeover = true },
			want:   []string{"user_adopt a@x.test [meta.cbkSyncOwner]"},
			bodies: map[string]string{"user_adopt a@x.test": `{"meta":{"$update":{"cbkSyncOwner":"acme"}}}`},
		},
		{
			name:    "owned and undeclared without prune is an orphan",
			actual:  actual(remoteUser("u1", "gone@x.test", ownedMeta())),
			want:    []string{},
			orphans: []string{"gone@x.test"},
		},
		{
			name:   "owned and undeclared with prune is deleted; unmanaged and foreign never",
			prune:  true,
			actual: actual(remoteUser("u2", "b@x.test", ownedMeta()), remoteUser("u1", "a@x.test", ownedMeta()), remoteUser("u3", "c@x.test", state.Null[state.Meta]()), remoteUser("u4", "d@x.test", state.Some(meta(state.OwnerKey, "o")))),
			want:   []string{"user_delete a@x.test", "user_delete b@x.test"},
		},
		{
			name:   "deletes over --max-deletes are unsafe",
			prune:  true,
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta()), remoteUser("u2", "b@x.test", ownedMeta()), remoteUser("u3", "c@x.test", ownedMeta())),
			opts:   func(o *Options) { o.MaxDeletes = 2 },
			want:   []string{"user_delete a@x.test", "user_delete b@x.test", "user_delete c@x.test"},
			unsafe: []string{"deletes 3 users, more than --max-deletes 2; pass --force-deletes"},
		},
		{
			name:   "--force-deletes lifts the caps with a warning",
			prune:  true,
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta()), remoteUser("u2", "b@x.test", ownedMeta()), remoteUser("u3", "c@x.test", ownedMeta())),
			opts:   func(o *Options) { o.MaxDeletes = 2; o.ForceDeletes = true },
			want:   []string{"user_delete a@x.test", "user_delete b@x.test", "user_delete c@x.test"},
			warn:   []string{"allowed by --force-deletes"},
		},
		{
			name:   "tokens: owned equal no change; undeclared owned revoked; unmanaged undeclared kept",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", ownedMeta(), time.Hour), remoteToken("t2", "old", ownedMeta(), time.Hour), remoteToken("t3", "manual", state.Null[state.Meta](), time.Hour)),
			want:   []string{"token_revoke a@x.test/old"},
		},
		{
			name:   "tokens: exclusiveTokens revokes unmanaged and foreign tokens too",
			users:  []state.DesiredUser{du("a@x.test", withTokens(), func(u *state.DesiredUser) { u.ExclusiveTokens = true })},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t3", "manual", state.Null[state.Meta](), time.Hour), remoteToken("t4", "f", state.Some(meta(state.OwnerKey, "o")), time.Hour)),
			want:   []string{"token_revoke a@x.test/f", "token_revoke a@x.test/manual"},
		},
		{
			name:   "tokens: empty declared list revokes all owned, keeps foreign",
			users:  []state.DesiredUser{du("a@x.test", withTokens())},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "x", ownedMeta(), time.Hour), remoteToken("t4", "f", state.Some(meta(state.OwnerKey, "o")), time.Hour)),
			want:   []string{"token_revoke a@x.test/x"},
		},
		{
			name:   "tokens not managed: nothing read, nothing changed",
			users:  []state.DesiredUser{du("a@x.test")},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			want:   []string{},
		},
		{
			name:   "tokens: an existing user whose tokens were not read is an error",
			users:  []state.DesiredUser{du("a@x.test", withTokens())},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			err:    ErrTokensNotRead,
		},
		{
			name:   "tokens: missing declared token created; drifted description and meta updated",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci", Description: state.Some("CI"), Meta: state.Some(meta("p", "ci"))}, state.DesiredToken{Name: "new"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", ownedMeta("p", "old", state.NonceKey, "n"), time.Hour)),
			want:   []string{"token_update a@x.test/ci [description,meta.p]", "token_create a@x.test/new [meta.cbkSyncOwner]"},
			bodies: map[string]string{"token_update a@x.test/ci": `{"description":"CI","meta":{"$update":{"cbkSyncOwner":"acme","p":"ci"}}}`},
		},
		{
			// The platform's token name and description are non-null columns: null fails
			// inside the database (500) on every attempt, so a declared null is sent as "".
			name: "tokens: a declared null description is sent as \"\", and a listed \"\" meets it",
			users: []state.DesiredUser{du("a@x.test", withTokens(
				state.DesiredToken{Name: "new", Description: state.Null[string]()},
				state.DesiredToken{Name: "was", Description: state.Null[string]()},
				state.DesiredToken{Name: "empty", Description: state.Null[string]()}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1",
				func() state.Token {
					t := remoteToken("t1", "was", ownedMeta(), time.Hour)
					t.Description = state.Some("old")
					return t
				}(),
				func() state.Token {
					t := remoteToken("t2", "empty", ownedMeta(), time.Hour)
					t.Description = state.Some("")
					return t
				}()),
			want: []string{"token_create a@x.test/new [description,meta.cbkSyncOwner]", "token_update a@x.test/was [description]"},
			bodies: map[string]string{
				"token_update a@x.test/was": `{"description":""}`,
				"token_create a@x.test/new": `{"name":"new","description":"","meta":{"cbkSyncOwner":"acme"}}`,
			},
		},
		{
			name:   "tokens: exact meta ignores the creation nonce",
			users:  []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.MetaExact = true }, withTokens(state.DesiredToken{Name: "ci", Meta: state.Some(meta("p", "ci"))}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", ownedMeta("p", "ci", state.NonceKey, "n"), time.Hour)),
			want:   []string{},
		},
		{
			name:   "tokens: unmanaged token with declared name is adopted",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", state.Null[state.Meta](), time.Hour)),
			want:   []string{"token_adopt a@x.test/ci [meta.cbkSyncOwner]"},
			bodies: map[string]string{"token_adopt a@x.test/ci": `{"meta":{"$update":{"cbkSyncOwner":"acme"}}}`},
		},
		{
			name:   "tokens: foreign token with declared name needs --takeover",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", state.Some(meta(state.OwnerKey, "o")), time.Hour)),
			want:   []string{},
			unsafe: []string{`user a@x.test: token ci (t1) is owned by "o"; pass --takeover to adopt it`},
		},
		{
			name:   "tokens: foreign token with declared name is taken over with --takeover, with a warning",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", state.Some(meta(state.OwnerKey, "o")), time.Hour)),
			opts:   func(o *Options) { o.Takeover = true },
			want:   []string{"token_adopt a@x.test/ci [meta.cbkSyncOwner]"},
			warn:   []string{`token ci owned by "o" is taken over (--takeover)`},
		},
		{
			name:   "tokens: a pending owned token is revoked and its declared name created again",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", ownedMeta(state.NonceKey, "n", state.PendingKey, true), time.Minute)),
			want:   []string{"token_create a@x.test/ci [meta.cbkSyncOwner]", "token_revoke a@x.test/ci"},
		},
		{
			name:  "tokens: a pending successor is never the newest: the rotation is planned again and it is revoked",
			users: []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci", RotateAfter: 24 * time.Hour}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1",
				remoteToken("t1", "ci", ownedMeta(), 48*time.Hour), remoteToken("t2", "ci", ownedMeta(state.PendingKey, true), time.Minute)),
			want: []string{"token_rotate a@x.test/ci [meta.cbkSyncOwner]", "token_revoke a@x.test/ci"},
		},
		{
			name:  "tokens: a confirmed successor is kept and the old token revoked; a cleared or unowned pending mark is no mark",
			users: []state.DesiredUser{du("a@x.test", func(u *state.DesiredUser) { u.MetaExact = true }, withTokens(state.DesiredToken{Name: "ci", RotateAfter: 24 * time.Hour}, state.DesiredToken{Name: "cd"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1",
				remoteToken("t1", "ci", ownedMeta(), 48*time.Hour), remoteToken("t2", "ci", ownedMeta(state.NonceKey, "n", state.PendingKey, nil), time.Minute),
				remoteToken("t3", "cd", ownedMeta(state.PendingKey, false), time.Minute), remoteToken("t4", "x", state.Some(meta(state.PendingKey, true)), time.Minute)),
			want: []string{"token_revoke a@x.test/ci"},
			warn: []string{"keeping t2, revoking t1"},
		},
		{
			name:  "tokens: duplicates keep the newest owned, revoke other owned, keep unmanaged",
			users: []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1",
				remoteToken("t1", "ci", ownedMeta(), 3*time.Hour), remoteToken("t2", "ci", ownedMeta(), time.Hour),
				remoteToken("t3", "ci", state.Null[state.Meta](), time.Minute)),
			want: []string{"token_revoke a@x.test/ci"},
			warn: []string{"keeping t2, revoking t1", "keeping unowned token t3"},
		},
		{
			name:   "tokens: older than rotateAfter is rotated",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci", RotateAfter: 24 * time.Hour}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", ownedMeta(), 48*time.Hour)),
			want:   []string{"token_rotate a@x.test/ci [meta.cbkSyncOwner]"},
			bodies: map[string]string{"token_rotate a@x.test/ci": `{"name":"ci","meta":{"cbkSyncOwner":"acme"}}`},
		},
		{
			name:   "tokens: younger than rotateAfter is kept",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci", RotateAfter: 24 * time.Hour}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", remoteToken("t1", "ci", ownedMeta(), 23*time.Hour)),
			want:   []string{},
		},
		{
			name:   "tokens of an adopted user are managed too; declared before revoked",
			users:  []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "b"}, state.DesiredToken{Name: "a"}))},
			actual: withTokenList(actual(remoteUser("u1", "a@x.test", state.Null[state.Meta]())), "u1", remoteToken("t0", "0", ownedMeta(), time.Hour)),
			want:   []string{"user_adopt a@x.test [meta.cbkSyncOwner]", "token_create a@x.test/a [meta.cbkSyncOwner]", "token_create a@x.test/b [meta.cbkSyncOwner]", "token_revoke a@x.test/0"},
		},
		{
			name:   "users ordered by email key regardless of input order",
			users:  []state.DesiredUser{du("c@x.test"), du("B@x.test"), du("a@x.test")},
			actual: actual(),
			want:   []string{"user_create a@x.test [email,meta.cbkSyncOwner]", "user_create B@x.test [email,meta.cbkSyncOwner]", "user_create c@x.test [email,meta.cbkSyncOwner]"},
		},
		{
			name:   "several remote users with a declared email key: an error naming them, never a guess",
			prune:  true,
			users:  []state.DesiredUser{du("a@x.test", withName("A"))},
			actual: actual(remoteUser("u1", "A@x.test", ownedMeta()), remoteUser("u2", "a@x.test", ownedMeta(), func(u *state.User) { u.CreatedAt-- }), remoteUser("u3", "a@X.test", state.Null[state.Meta]())),
			err:    errors.New("email a@x.test is held by 3 remote users (u1 and u2 and u3): cbk-sync will not guess which one the file means; declare the user by `id` instead"),
		},
		{
			name:   "several owned remote users with one undeclared email key are all pruned",
			prune:  true,
			actual: actual(remoteUser("u1", "A@x.test", ownedMeta()), remoteUser("u2", "a@x.test", ownedMeta())),
			want:   []string{"user_delete A@x.test", "user_delete a@x.test"},
		},
		{
			name:  "declared twice is an error",
			users: []state.DesiredUser{du("a@x.test"), du("A@x.test")},
			err:   errors.New("declared twice"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runComputeCase(t, tc)
		})
	}
}

func runComputeCase(t *testing.T, tc computeCase) {
	t.Helper()
	d := state.Desired{Owner: testOwner, PruneUsers: tc.prune, Users: tc.users}
	o := DefaultOptions(testNow)
	if tc.opts != nil {
		tc.opts(&o)
	}
	if tc.actual.Tokens == nil {
		tc.actual.Tokens = map[string][]state.Token{}
	}
	p, err := Compute(d, tc.actual, o)
	if tc.err != nil {
		require.Error(t, err)
		if !errors.Is(err, tc.err) {
			assert.Contains(t, err.Error(), tc.err.Error())
		}
		return
	}
	require.NoError(t, err)
	assert.Equal(t, tc.want, describePlan(&p))
	for key, body := range tc.bodies {
		c, ok := findChange(&p, key)
		if assert.True(t, ok, "no change %q", key) {
			assert.JSONEq(t, body, wire(t, c), key)
		}
	}
	assert.Equal(t, len(tc.unsafe) == 0, p.Safety.Safe, "safe")
	require.Len(t, p.Safety.Reasons, len(tc.unsafe))
	for i, r := range tc.unsafe {
		assert.Contains(t, p.Safety.Reasons[i], r)
	}
	for _, w := range tc.warn {
		assert.True(t, containsSub(p.Warnings, w), "warning %q not in %q", w, p.Warnings)
	}
	var orphans []string
	for _, o := range p.Orphans {
		orphans = append(orphans, o.Email)
	}
	assert.Equal(t, tc.orphans, orphans)
	assert.Equal(t, Fingerprint(Dependencies(tc.actual, &p)), p.Fingerprint)
	assert.Equal(t, TokenUserIDs(Dependencies(tc.actual, &p)), p.TokenUsers)
	assertConverges(t, d, tc.actual, &p, o)
	assertShuffledSame(t, d, tc.actual, o, &p)
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// assertShuffledSame recomputes with every input list reversed: the plan must not
// depend on input order.
func assertShuffledSame(t *testing.T, d state.Desired, a state.Actual, o Options, want *Plan) {
	t.Helper()
	rd := d
	rd.Users = reversed(d.Users)
	for i := range rd.Users {
		rd.Users[i].Tokens = reversed(rd.Users[i].Tokens)
	}
	ra := state.Actual{Users: reversed(a.Users), Tokens: map[string][]state.Token{}, Aliases: a.Aliases}
	for id, ts := range a.Tokens {
		ra.Tokens[id] = reversed(ts)
	}
	got, err := Compute(rd, ra, o)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(describePlan(want)), fmt.Sprint(describePlan(&got)))
	assert.Equal(t, want.Fingerprint, got.Fingerprint)
	assert.Equal(t, want.Warnings, got.Warnings)
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestPercentCapOnlyFromTenOwned(t *testing.T) {
	mk := func(n int) state.Actual {
		a := actual()
		for i := range n {
			a.Users = append(a.Users, remoteUser(fmt.Sprintf("u%02d", i), fmt.Sprintf("u%02d@x.test", i), ownedMeta()))
		}
		return a
	}
	// 9 owned, 3 deleted (33%): percentage not checked below 10 owned.
	a := mk(9)
	d := state.Desired{Owner: testOwner, PruneUsers: true}
	for i := 3; i < 9; i++ {
		d.Users = append(d.Users, du(fmt.Sprintf("u%02d@x.test", i)))
	}
	p, err := Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.True(t, p.Safety.Safe)
	assert.Equal(t, 9, p.Safety.Owned)
	assert.Equal(t, 3, p.Safety.Deletes)

	// 10 owned, 3 deleted (30% > 25%): unsafe.
	a = mk(10)
	d.Users = append(d.Users, du("u09@x.test"))
	p, err = Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.False(t, p.Safety.Safe)
	require.Len(t, p.Safety.Reasons, 1)
	assert.Equal(t, "the plan deletes 3 of 10 owned users (30%), more than --max-delete-percent 25; pass --force-deletes to allow it", p.Safety.Reasons[0])

	// Negative caps mean none.
	o := DefaultOptions(testNow)
	o.MaxDeletes, o.MaxDeletePercent = -1, -1
	d.Users = nil
	p, err = Compute(d, a, o)
	require.NoError(t, err)
	assert.True(t, p.Safety.Safe)
	assert.Equal(t, 10, p.Safety.Deletes)
}

func TestComputeNeedsOwner(t *testing.T) {
	_, err := Compute(state.Desired{}, state.Actual{}, DefaultOptions(testNow))
	require.Error(t, err)
}

func TestRotationNeedsKnownCreationTime(t *testing.T) {
	d := state.Desired{Owner: testOwner, Users: []state.DesiredUser{du("a@x.test", withTokens(state.DesiredToken{Name: "ci", RotateAfter: time.Hour}))}}
	tok := remoteToken("t1", "ci", ownedMeta(), 0)
	tok.CreatedAt = 0
	a := withTokenList(actual(remoteUser("u1", "a@x.test", ownedMeta())), "u1", tok)
	p, err := Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.True(t, p.Empty())
}

// UserChanges plans one existing user exactly as Compute plans it within a whole plan.
func TestUserChangesIsComputeForOneUser(t *testing.T) {
	du := state.DesiredUser{Email: state.Some("a@acme.test"), Name: state.Some("A"), ManageTokens: true,
		Tokens: []state.DesiredToken{{Name: "ci"}, {Name: "deploy", RotateAfter: 24 * time.Hour}, {Name: "new"}}}
	u := remoteUser("u1", "a@acme.test", state.Some(meta("team", "x")))
	toks := []state.Token{
		remoteToken("t1", "ci", ownedMeta(), time.Hour),
		remoteToken("t2", "deploy", ownedMeta(), 48*time.Hour),
		remoteToken("t3", "old", ownedMeta(), time.Hour),
	}
	o := DefaultOptions(testNow)
	whole, err := Compute(state.Desired{Owner: testOwner, Users: []state.DesiredUser{du}},
		state.Actual{Users: []state.User{u}, Tokens: map[string][]state.Token{"u1": toks}}, o)
	require.NoError(t, err)
	require.Len(t, whole.Users, 1)

	up, reasons, warnings, err := UserChanges(&du, testOwner, u, toks, o)
	require.NoError(t, err)
	assert.Empty(t, reasons)
	assert.ElementsMatch(t, whole.Warnings, warnings)
	assert.Equal(t, whole.Users[0], up)
	var got []string
	for _, c := range up.Changes {
		got = append(got, describe(c))
	}
	assert.Equal(t, []string{"user_adopt a@acme.test [name,meta.cbkSyncOwner]", "token_rotate a@acme.test/deploy [meta.cbkSyncOwner]",
		"token_create a@acme.test/new [meta.cbkSyncOwner]", "token_revoke a@acme.test/old"}, got)

	// A foreign user is refused without --takeover, as in a plan.
	f := remoteUser("u1", "a@acme.test", state.Some(meta(state.OwnerKey, "other")))
	up, reasons, _, err = UserChanges(&du, testOwner, f, toks, o)
	require.NoError(t, err)
	assert.Empty(t, up.Changes)
	assert.Equal(t, []string{`user a@acme.test is owned by "other"; pass --takeover to adopt it`}, reasons)
}

// TestComputeAliases: a declared alias is in every user body (create, update, adopt),
// drift is found from the @alias lookups alone, and updates of users that declare no
// alias are counted in one warning, since each clears whatever alias the user had.
func TestComputeAliases(t *testing.T) {
	withAlias := func(a string) func(*state.DesiredUser) { return func(u *state.DesiredUser) { u.Alias = a } }
	aliases := func(a state.Actual, kv ...string) state.Actual {
		a.Aliases = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			a.Aliases[kv[i]] = kv[i+1]
		}
		return a
	}
	const clears = "without a declared alias, and the platform clears the alias of every user it updates without one"
	cases := []struct {
		computeCase
		warnings []string // exactly these warnings (substrings, in order)
		reason   string   // substring of the user change's reason
	}{
		{computeCase: computeCase{
			name:   "create sends the alias",
			users:  []state.DesiredUser{du("a@x.test", withAlias("acme-eu"), withName("A"))},
			actual: actual(),
			want:   []string{"user_create a@x.test [email,alias,name,meta.cbkSyncOwner]"},
			bodies: map[string]string{"user_create a@x.test": `{"alias":"acme-eu","email":"a@x.test","name":"A","meta":{"cbkSyncOwner":"acme"}}`},
		}},
		{computeCase: computeCase{
			name:   "the alias names this user: no change",
			users:  []state.DesiredUser{du("a@x.test", withAlias("acme-eu"))},
			actual: aliases(actual(remoteUser("u1", "a@x.test", ownedMeta())), "acme-eu", "u1"),
			want:   []string{},
		}},
		{computeCase: computeCase{
			name:   "the alias was not looked up: unknown, no change",
			users:  []state.DesiredUser{du("a@x.test", withAlias("acme-eu"))},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			want:   []string{},
		}},
		{computeCase: computeCase{
			name:   "the alias names no user (removed behind our back): restored",
			users:  []state.DesiredUser{du("a@x.test", withAlias("acme-eu"))},
			actual: aliases(actual(remoteUser("u1", "a@x.test", ownedMeta())), "acme-eu", ""),
			want:   []string{"user_update a@x.test [alias]"},
			bodies: map[string]string{"user_update a@x.test": `{"alias":"acme-eu"}`},
		}, reason: `drifted from the configuration; alias "acme-eu" names no user`},
		{computeCase: computeCase{
			name:  "the alias names another user: moved, with a warning",
			users: []state.DesiredUser{du("a@x.test", withAlias("acme-eu"))},
			actual: aliases(actual(remoteUser("u1", "a@x.test", ownedMeta()), remoteUser("u2", "b@x.test", state.Opt[state.Meta]{})),
				"acme-eu", "u2"),
			want:   []string{"user_update a@x.test [alias]"},
			bodies: map[string]string{"user_update a@x.test": `{"alias":"acme-eu"}`},
		}, warnings: []string{`alias "acme-eu", declared for a@x.test (u1), names user u2: the update that moves it fails with 409 CONFLICT while u2 keeps it`},
			reason: `alias "acme-eu" names user u2`},
		{computeCase: computeCase{
			name:   "a rename sends the alias too",
			users:  []state.DesiredUser{du("a@x.test", withAlias("acme-eu"), withName("New"))},
			actual: aliases(actual(remoteUser("u1", "a@x.test", ownedMeta())), "acme-eu", "u1"),
			want:   []string{"user_update a@x.test [name]"},
			bodies: map[string]string{"user_update a@x.test": `{"alias":"acme-eu","name":"New"}`},
		}},
		{computeCase: computeCase{
			name: "a limits change sends the alias too",
			users: []state.DesiredUser{du("a@x.test", withAlias("acme-eu"), func(u *state.DesiredUser) {
				u.Limits = state.Some(state.Limits{"tokens": 2.0})
			})},
			actual: aliases(actual(remoteUser("u1", "a@x.test", ownedMeta(), func(u *state.User) {
				u.Limits = state.Some(state.Limits{"tokens": 1.0, "file": map[string]any{"maxFileSize": 5.0}})
			})), "acme-eu", "u1"),
			want:   []string{"user_update a@x.test [limits.tokens]"},
			bodies: map[string]string{"user_update a@x.test": `{"alias":"acme-eu","limits":{"tokens":2,"file":{"maxFileSize":5}}}`},
		}},
		{computeCase: computeCase{
			name:   "an adoption sends the alias",
			users:  []state.DesiredUser{du("a@x.test", withAlias("acme-eu"))},
			actual: aliases(actual(remoteUser("u1", "a@x.test", state.Some(meta("k", "v")))), "acme-eu", "u1"),
			want:   []string{"user_adopt a@x.test [meta.cbkSyncOwner]"},
			bodies: map[string]string{"user_adopt a@x.test": `{"alias":"acme-eu","meta":{"$update":{"cbkSyncOwner":"acme"}}}`},
		}},
		{computeCase: computeCase{
			name: "updates of users without a declared alias are counted in one warning",
			users: []state.DesiredUser{du("a@x.test", withName("A")), du("b@x.test", withName("B")),
				du("c@x.test", withName("C"), withAlias("c")), du("d@x.test"), du("e@x.test", withName("E"))},
			actual: aliases(actual(remoteUser("u1", "a@x.test", ownedMeta()), remoteUser("u2", "b@x.test", state.Some(meta("k", "v"))),
				remoteUser("u3", "c@x.test", ownedMeta()), remoteUser("u4", "d@x.test", ownedMeta())), "c", "u3"),
			want: []string{"user_update a@x.test [name]", "user_adopt b@x.test [name,meta.cbkSyncOwner]",
				"user_update c@x.test [name]", "user_create e@x.test [email,name,meta.cbkSyncOwner]"},
		}, warnings: []string{"2 users are updated " + clears + " (aliases are write-only, so cbk-sync cannot tell which users have one): declare `alias` for each user that has one"}},
		{computeCase: computeCase{
			name:   "one user: singular",
			users:  []state.DesiredUser{du("a@x.test", withName("A"))},
			actual: actual(remoteUser("u1", "a@x.test", ownedMeta())),
			want:   []string{"user_update a@x.test [name]"},
		}, warnings: []string{"1 user is updated " + clears}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runComputeCase(t, tc.computeCase)
			p, err := Compute(state.Desired{Owner: testOwner, Users: tc.users}, tc.actual, DefaultOptions(testNow))
			require.NoError(t, err)
			require.Len(t, p.Warnings, len(tc.warnings), "%q", p.Warnings)
			for i, w := range tc.warnings {
				assert.Contains(t, p.Warnings[i], w)
			}
			if tc.reason != "" {
				assert.Contains(t, p.Users[0].Changes[0].Reason, tc.reason)
			}
		})
	}

	// AliasesToRead: the declared aliases of existing users only (matched as Compute
	// matches them: by email in any case, by id), sorted; none for a user whose email
	// several users have, which Compute refuses.
	d := state.Desired{Owner: testOwner, Users: []state.DesiredUser{du("a@x.test", withAlias("zz")),
		du("b@x.test", withAlias("bb")), du("new@x.test", withAlias("new")), du("c@x.test"), du("dup@x.test", withAlias("dup")),
		{ID: "u5", Alias: "by-id"}}}
	got := AliasesToRead(d, []state.User{remoteUser("u1", "A@x.test", ownedMeta()),
		remoteUser("u2", "b@x.test", ownedMeta()), remoteUser("u3", "c@x.test", ownedMeta()), remoteUser("u4", "other@x.test", ownedMeta()),
		remoteUser("u5", "five@x.test", ownedMeta()), remoteUser("u6", "dup@x.test", ownedMeta()), remoteUser("u7", "DUP@x.test", ownedMeta())})
	assert.Equal(t, []string{"bb", "by-id", "zz"}, got)
	assert.Empty(t, AliasesToRead(state.Desired{Owner: testOwner, Users: []state.DesiredUser{du("a@x.test")}}, nil))
}
