package emulator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// fuzzTarget is what one fuzzed request is sent to.
type fuzzTarget struct {
	op   string // opUserCreate, opUserUpdate, opTokenCreate or opTokenUpdate
	path string
}

// fuzzEmulator returns an emulator holding two users, one with a token, and the
// targets of the four body-taking operations on them.
func fuzzEmulator(t *testing.T) (*Emulator, []fuzzTarget) {
	e, err := New(Options{Token: testToken, Now: newFakeClock().now})
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.PutUser(state.User{Email: state.Some("a@x.test"), Meta: state.Some(state.Meta{"team": "t"}),
		Limits: state.Some(state.Limits{"tokens": 5.0, "file": map[string]any{"maxFileSize": 10.0}, "foo": map[string]any{"bar": -1.5}})})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.PutUser(state.User{Email: state.Some("B@x.test")})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := e.PutToken(a.ID, state.Token{Name: state.Some("ci"), Meta: state.Some(state.Meta{"k": 1.0})})
	if err != nil {
		t.Fatal(err)
	}
	return e, []fuzzTarget{
		{opUserCreate, "/v1/partner/user/create"},
		{opUserUpdate, "/v1/partner/user/" + a.ID + "/update"},
		{opUserUpdate, "/api/v1/partner/user/" + b.ID + "/update"},
		{opTokenCreate, "/v1/partner/user/" + b.ID + "/token/create"},
		{opTokenUpdate, "/v1/partner/user/" + a.ID + "/token/" + tk.ID + "/update"},
		{opTokenCreate, "/v1/partner/user/" + a.ID + "/token/create"},
		{opUserCreate, "/api/v1/partner/user/create"},
		{opUserUpdate, "/v1/partner/user/" + a.ID + "/update"},
	}
}

// FuzzRequestBody posts arbitrary bodies to user and token create and update, three in
// a row, chosen by ops (3 bits each). Every answer must be a 200 or a 4xx with the
// API's error body, and the store's invariants must hold after each.
func FuzzRequestBody(f *testing.F) {
	const (
		create  = 0
		updateA = 1
		updateB = 2
		tokenB  = 3
		tokUpd  = 4
	)
	ops := func(a, b, c int) uint16 { return uint16(a | b<<3 | c<<6) }
	f.Add(ops(create, updateB, tokUpd), []byte(`{"email":"c@x.test","name":"C","limits":{"database":{"files":2}}}`),
		[]byte(`{"email":"c@X.test"}`), []byte(`{"meta":{"$update":{"a":null}}}`))
	f.Add(ops(updateA, updateB, create), []byte(`{"email":""}`), []byte(`{"email":"A@x.test"}`), []byte(`{"email":"a@x.test"}`))
	f.Add(ops(updateA, tokenB, tokUpd), []byte(`{"meta":{"$update":{"_x":1}}}`),
		[]byte(`{"name":"ci","meta":{"k":1},"config":{}}`), []byte(`{"meta":{"_k":1}}`))
	f.Add(ops(create, updateA, create), []byte(`{"limits":{"tokens":-1}}`), []byte(`{"limits":{"tokens":1e19,"messages":2.5}}`),
		[]byte(`{"limits":{"tokens":-0,"database":null},"alias":null}`))
	f.Add(ops(create, create, updateA), []byte(`{"email":"<d@x.test>"}`), []byte(`{"meta":{"$update":{"a":1},"b":2}}`), []byte(`null`))
	f.Add(ops(tokUpd, tokenB, updateB), []byte(`{"config":[]}`), []byte(`{}`), []byte(`{"email":"b@x.test","bogus":1}`))
	f.Add(ops(create, updateA, updateB), []byte(`{"alias":"al","email":"c@x.test"}`), []byte(`{"alias":"al"}`), []byte(`{"alias":"al","name":"n"}`))
	f.Add(ops(create, updateA, tokUpd), []byte(`{"meta":{"#h":{"#i":[{"#j":1}]},"-d":1}}`), []byte(`{"meta":{"$update":{"-x":1,"#y":{"#z":2},"$k":3}}}`),
		[]byte(`{"meta":{"a":[{"#b":1}],"\u00e9":2}}`))
	f.Fuzz(func(t *testing.T, ops uint16, b1, b2, b3 []byte) {
		e, targets := fuzzEmulator(t)
		for i, body := range [][]byte{b1, b2, b3} {
			tg := targets[ops>>(3*i)&7]
			req := httptest.NewRequest(http.MethodPost, tg.path, strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			checkAnswer(t, tg.op, rec, body)
			checkInvariants(t, e)
		}
	})
}

func checkAnswer(t *testing.T, op string, rec *httptest.ResponseRecorder, body []byte) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %q: content type %q", op, body, ct)
	}
	var ans map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatalf("%s %q: the answer is not a JSON object: %v: %s", op, body, err, rec.Body.Bytes())
	}
	str := func(k string) string { s, _ := ans[k].(string); return s }
	switch {
	case rec.Code == http.StatusOK:
		if str("id") == "" {
			t.Fatalf("%s %q: 200 without an id: %s", op, body, rec.Body.Bytes())
		}
		if op == opTokenCreate && !strings.HasPrefix(str("token"), "sk-") {
			t.Fatalf("%s %q: a created token without its secret: %s", op, body, rec.Body.Bytes())
		}
	case rec.Code >= 400 && rec.Code < 500:
		if len(ans) != 2 || str("message") == "" || str("code") == "" {
			t.Fatalf("%s %q: %d with a body that is not {message, code}: %s", op, body, rec.Code, rec.Body.Bytes())
		}
	default:
		t.Fatalf("%s %q: status %d: %s", op, body, rec.Code, rec.Body.Bytes())
	}
}

// checkInvariants checks what no request may break: unique emails (by the key the
// plan matches on), no reserved meta keys, no negative limits, and an email index
// that agrees with the users.
func checkInvariants(t *testing.T, e *Emulator) {
	t.Helper()
	users := e.Users()
	byKey := map[string]string{}
	for _, u := range users {
		if email, ok := u.Email.Get(); ok {
			if email == "" {
				t.Fatalf("user %s: an empty email is stored instead of null", u.ID)
			}
			k := state.EmailKey(email)
			if other, dup := byKey[k]; dup {
				t.Fatalf("users %s and %s share the email %q", other, u.ID, email)
			}
			byKey[k] = u.ID
		}
		checkMeta(t, "user "+u.ID, u.Meta)
		checkLimits(t, u)
		for _, tk := range e.Tokens(u.ID) {
			checkMeta(t, "token "+tk.ID, tk.Meta)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, u := range e.users.all("") {
		checkShown(t, "user "+u.ID, answerUser(u, true).Meta.Value())
		for _, tk := range e.tokens.all(u.ID) {
			checkShown(t, "token "+tk.ID, answerToken(tk).Meta.Value())
		}
	}
	aliased := 0
	for _, u := range e.users.all("") {
		if a, ok := u.Alias.Get(); ok {
			aliased++
			if !state.ValidAlias(a) {
				t.Fatalf("user %s: invalid alias %q stored", u.ID, a)
			}
			if e.byAlias[a] != u.ID {
				t.Fatalf("the alias index maps %q to %q, not %q", a, e.byAlias[a], u.ID)
			}
		}
	}
	if len(e.byAlias) != aliased {
		t.Fatalf("the alias index has %d entries for %d users with an alias", len(e.byAlias), aliased)
	}
	if len(e.byEmail) != len(byKey) {
		t.Fatalf("the email index has %d entries for %d users with an email", len(e.byEmail), len(byKey))
	}
	for k, id := range byKey {
		if e.byEmail[k] != id {
			t.Fatalf("the email index maps %q to %q, not %q", k, e.byEmail[k], id)
		}
	}
}

func checkMeta(t *testing.T, who string, m state.Opt[state.Meta]) {
	t.Helper()
	for k := range m.Value() {
		if strings.HasPrefix(k, "_") {
			t.Fatalf("%s: reserved meta key %q was stored", who, k)
		}
	}
}

// checkShown fails when an answer shows a meta key that starts with "#", at any depth.
func checkShown(t *testing.T, who string, v any) {
	t.Helper()
	switch x := v.(type) {
	case state.Meta:
		checkShown(t, who, map[string]any(x))
	case map[string]any:
		for k, e := range x {
			if state.MetaKeyHidden(k) {
				t.Fatalf("%s: hidden meta key %q is shown", who, k)
			}
			checkShown(t, who, e)
		}
	case []any:
		for _, e := range x {
			checkShown(t, who, e)
		}
	}
}

func checkLimits(t *testing.T, u state.User) {
	t.Helper()
	if err := state.CheckLimits(u.Limits.Value()); err != nil {
		t.Fatalf("user %s: a limit the platform refuses was stored: %v: %+v", u.ID, err, u.Limits.Value())
	}
}
