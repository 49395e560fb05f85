package emulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var prefixes = []string{"/v1/partner", "/api/v1/partner"}

// TestEndpointsTable walks every row of docs/partner-api.md's endpoint table on both path
// prefixes: right method and answer shape, wrong method refused, counted once.
func TestEndpointsTable(t *testing.T) {
	rows := []struct {
		op, method, path, body string
		wantKeys               []string
	}{
		{"user.list", "GET", "/user/list", "", []string{"items", "cursor"}},
		{"user.fetch", "GET", "/user/{u}/fetch", "", []string{"id", "createdAt", "updatedAt", "name", "meta", "image", "email", "limits"}},
		{"user.create", "POST", "/user/create", `{"email":"new@acme.test"}`, []string{"id"}},
		{"user.update", "POST", "/user/{u}/update", `{"name":"x"}`, []string{"id"}},
		{"user.delete", "POST", "/user/{u}/delete", `{}`, []string{"id"}},
		{"token.list", "GET", "/user/{u}/token/list", "", []string{"items", "cursor"}},
		{"token.create", "POST", "/user/{u}/token/create", `{"name":"ci"}`, []string{"id", "token", "createdAt"}},
		{"token.update", "POST", "/user/{u}/token/{t}/update", `{"name":"cd"}`, []string{"id"}},
		{"token.delete", "POST", "/user/{u}/token/{t}/delete", `{}`, []string{"id"}},
	}
	for _, prefix := range prefixes {
		for _, row := range rows {
			t.Run(prefix+" "+row.op, func(t *testing.T) {
				h := newHarness(t, Options{})
				uid := h.createUser(`{"email":"a@acme.test"}`)
				tid := h.createToken(uid, `{"name":"t"}`)["id"].(string)
				h.e.ResetCounts()
				path := prefix + strings.NewReplacer("{u}", uid, "{t}", tid).Replace(row.path)

				m := h.ok(row.method, path, row.body)
				assert.ElementsMatch(t, row.wantKeys, slices.Collect(mapKeys(m)))
				wrong := "POST"
				if row.method == "POST" {
					wrong = "GET"
				}
				r := h.fail(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", wrong, path, row.body)
				assert.Equal(t, row.method, r.header.Get("Allow"))

				counts := h.e.Counts()
				assert.Equal(t, int64(1), counts[row.op], "the refused method is not counted")
				var total int64
				for _, n := range counts {
					total += n
				}
				assert.Equal(t, int64(1), total)
			})
		}
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestConformance walks the rules of docs/partner-api.md, one case each.
func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"401 without or with a wrong bearer, never echoing it", func(t *testing.T, h *harness) {
			for _, auth := range []string{"", "Bearer wrong", "Basic " + testToken, "Bearer", "Bearer " + testToken + "x"} {
				req, err := http.NewRequest("GET", h.srv.URL+"/v1/partner/user/list", nil)
				require.NoError(t, err)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := h.srv.Client().Do(req)
				require.NoError(t, err)
				var body errorBody
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
				resp.Body.Close()
				assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, auth)
				assert.Equal(t, "NOT_AUTHENTICATED", body.Code)
				assert.NotContains(t, body.Message, testToken)
				assert.NotContains(t, body.Message, "wrong")
			}
			assert.Zero(t, h.e.Counts()["user.list"], "unauthenticated requests do not reach the operation")
			h.ok("GET", "/v1/partner/user/list", "") // the scheme is case-insensitive, the secret not
		}},
		{"unknown paths are 404 NOT_FOUND", func(t *testing.T, h *harness) {
			for _, p := range []string{"/v1/partner/user", "/v1/partner/users/list", "/v2/partner/user/list", "/v1/partner/user//fetch", "/v1/partner/user/x/token/y/fetch", "/v1/partner/user/x/frob"} {
				h.fail(http.StatusNotFound, "NOT_FOUND", "GET", p, "")
			}
		}},
		{"a user answer has every field, unset ones null, ms timestamps", func(t *testing.T, h *harness) {
			id := h.createUser(`{"email":"a@acme.test"}`)
			page := h.ok("GET", "/v1/partner/user/list", "")
			got, err := json.Marshal(page["items"].([]any)[0])
			require.NoError(t, err)
			assert.JSONEq(t, fmt.Sprintf(`{"id":%q,"createdAt":1700000000001,"updatedAt":1700000000001,"name":null,"description":null,"meta":null,"image":null,"email":"a@acme.test","limits":null}`, id), string(got))
		}},
		{"TRAP: fetch leaves description out, list has it", func(t *testing.T, h *harness) {
			id := h.createUser(`{"email":"a@acme.test","description":"sandbox"}`)
			u := h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")
			_, has := u["description"]
			assert.False(t, has, "fetch must not carry description: %v", u)
			assert.Equal(t, "a@acme.test", u["email"])
			l := h.ok("GET", "/v1/partner/user/list", "")["items"].([]any)[0].(map[string]any)
			assert.Equal(t, "sandbox", l["description"])
			assert.Equal(t, "sandbox", h.e.Users()[0].Description.Value(), "Users() has description")
		}},
		{"ids are opaque, unique, CUID-like", func(t *testing.T, h *harness) {
			seen := map[string]bool{}
			uid := h.createUser(`{}`)
			seen[uid] = true
			for range 50 {
				id := h.createToken(uid, `{}`)["id"].(string)
				assert.Regexp(t, `^c[0-9a-z]{24}$`, id)
				assert.False(t, seen[id], "duplicate id %s", id)
				seen[id] = true
			}
		}},
		{"partial update: absent unchanged, null clears, updatedAt moves", func(t *testing.T, h *harness) {
			id := h.createUser(`{"email":"a@acme.test","name":"A","description":"d","image":"https://i.test/a.png","meta":{"k":"v"},"limits":{"tokens":1}}`)
			before := h.e.Users()[0]
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"name":null,"image":"https://i.test/b.png"}`)
			after := h.e.Users()[0]
			assert.True(t, after.Name.IsNull())
			assert.Equal(t, "https://i.test/b.png", after.Image.Value())
			assert.Equal(t, "d", after.Description.Value())
			assert.Equal(t, "a@acme.test", after.Email.Value())
			assert.Equal(t, before.Meta, after.Meta)
			assert.Equal(t, before.Limits, after.Limits)
			assert.Equal(t, before.CreatedAt, after.CreatedAt)
			assert.Greater(t, after.UpdatedAt, before.UpdatedAt)
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"description":null,"meta":null,"limits":null,"email":null}`)
			u := h.e.Users()[0]
			assert.True(t, u.Description.IsNull() && u.Meta.IsNull() && u.Limits.IsNull() && u.Email.IsNull())
		}},
		{"limits are replaced as a whole", func(t *testing.T, h *harness) {
			id := h.createUser(`{"limits":{"tokens":1,"messages":2,"database":{"files":3}}}`)
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"limits":{"conversations":5}}`)
			u := h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")
			assert.Equal(t, map[string]any{"conversations": float64(5)}, u["limits"])
		}},
		{"meta is replaced whole, or merged shallowly by $update", func(t *testing.T, h *harness) {
			id := h.createUser(`{"meta":{"a":"1","b":{"x":1}}}`)
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"meta":{"b":{"y":2}}}`)
			assert.Equal(t, map[string]any{"b": map[string]any{"y": float64(2)}}, fetchMeta(t, h, id))
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"meta":{"$update":{"c":"3","b":{"z":3}}}}`)
			assert.Equal(t, map[string]any{"b": map[string]any{"z": float64(3)}, "c": "3"}, fetchMeta(t, h, id), "shallow: b is replaced, not merged")
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"meta":{"$update":{"c":null}}}`)
			assert.Equal(t, map[string]any{"b": map[string]any{"z": float64(3)}, "c": nil}, fetchMeta(t, h, id), "a null in $update is stored as null")
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"meta":null}`)
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"meta":{"$update":{"d":"4"}}}`)
			assert.Equal(t, map[string]any{"d": "4"}, fetchMeta(t, h, id), "$update onto null meta")
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/update", `{"meta":{"$update":{"d":"4"},"e":"5"}}`)
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/update", `{"meta":{"$update":"x"}}`)
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/update", `{"meta":["x"]}`)
		}},
		{"meta keys starting with _ are refused, $update and tokens too", func(t *testing.T, h *harness) {
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/create", `{"meta":{"_x":"1"}}`)
			id := h.createUser(`{"meta":{"x_":"1"}}`)
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/update", `{"meta":{"$update":{"_x":"1"}}}`)
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/token/create", `{"meta":{"_x":"1"}}`)
			assert.Equal(t, map[string]any{"x_": "1"}, fetchMeta(t, h, id))
			assert.Empty(t, h.e.Tokens(id))
		}},
		{"TRAP: on update, a top-level meta key that starts with a non-word character is dropped", func(t *testing.T, h *harness) {
			// create stores what it is given; update drops -x, #x, $x, " x", éx, replace and $update alike
			id := h.createUser(`{"meta":{"-made":"1","keep":"1"}}`)
			assert.Equal(t, map[string]any{"-made": "1", "keep": "1"}, fetchMeta(t, h, id), "create stores what it is given")
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"meta":{"-team":"a","$update2":"b"," sp":"c","\u00e9quipe":"d","ok":"e","9lives":"f","x-y":"g"}}`)
			assert.Equal(t, map[string]any{"ok": "e", "9lives": "f", "x-y": "g"}, fetchMeta(t, h, id))
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"meta":{"$update":{"-team":"a","more":"h"}}}`)
			assert.Equal(t, map[string]any{"ok": "e", "9lives": "f", "x-y": "g", "more": "h"}, fetchMeta(t, h, id))
			tid := h.createToken(id, `{"meta":{"-t":"1"}}`)["id"].(string)
			h.ok("POST", "/v1/partner/user/"+id+"/token/"+tid+"/update", `{"meta":{"-t":"2","t":"3"}}`)
			toks := h.e.Tokens(id)
			require.Len(t, toks, 1)
			assert.Equal(t, map[string]any{"t": "3"}, map[string]any(toks[0].Meta.Value()), "token update drops -t")
		}},
		{"TRAP: meta keys starting with # are hidden on read at any depth", func(t *testing.T, h *harness) {
			id := h.createUser(`{"email":"a@acme.test","meta":{"#top":"x","a":{"#deep":1,"b":[{"#in":2,"c":3}]},"d":"e"}}`)
			want := map[string]any{"a": map[string]any{"b": []any{map[string]any{"c": float64(3)}}}, "d": "e"}
			assert.Equal(t, want, fetchMeta(t, h, id), "fetch")
			l := h.ok("GET", "/v1/partner/user/list", "")["items"].([]any)[0].(map[string]any)
			assert.Equal(t, want, l["meta"], "list")
			h.createToken(id, `{"name":"t","meta":{"#h":"x","v":{"#w":1}}}`)
			tl := h.ok("GET", "/v1/partner/user/"+id+"/token/list", "")["items"].([]any)[0].(map[string]any)
			assert.Equal(t, map[string]any{"v": map[string]any{}}, tl["meta"], "token list")
			res := h.do("GET", "/v1/partner/user/list", "", "Accept", "application/jsonl")
			assert.NotContains(t, string(res.body), "#", "JSONL stream")
		}},
		{"email: valid address, empty stored as null", func(t *testing.T, h *harness) {
			for _, bad := range []string{"nope", "a@", "@b.test", "Alice <a@b.test>", " a@b.test", "a b@c.test"} {
				h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/create", fmt.Sprintf(`{"email":%q}`, bad))
			}
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/create", `{"email":5}`)
			id := h.createUser(`{"email":""}`)
			assert.Nil(t, h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")["email"])
			h.createUser(`{"email":""}`) // two users without email do not conflict
			assert.Len(t, h.e.Users(), 2)
		}},
		{"409 CONFLICT on a duplicate email, any case, create and update", func(t *testing.T, h *harness) {
			a := h.createUser(`{"email":"Alice@Acme.test"}`)
			b := h.createUser(`{"email":"bob@acme.test"}`)
			h.fail(http.StatusConflict, "CONFLICT", "POST", "/v1/partner/user/create", `{"email":"alice@acme.TEST"}`)
			h.fail(http.StatusConflict, "CONFLICT", "POST", "/v1/partner/user/"+b+"/update", `{"email":"ALICE@acme.test"}`)
			h.ok("POST", "/v1/partner/user/"+a+"/update", `{"email":"alice@acme.test"}`) // its own email, new case
			h.ok("POST", "/v1/partner/user/"+a+"/update", `{"email":"carol@acme.test"}`)
			h.ok("POST", "/v1/partner/user/"+b+"/update", `{"email":"Alice@Acme.test"}`) // freed by the change
			h.ok("POST", "/v1/partner/user/"+b+"/delete", `{}`)
			h.createUser(`{"email":"alice@acme.test"}`) // freed by the delete
			assert.Len(t, h.e.Users(), 2)
		}},
		{"limits: known keys are non-negative whole numbers; unknown keys are stored as sent", func(t *testing.T, h *harness) {
			for _, bad := range []string{`{"tokens":-1}`, `{"database":{"files":-2}}`, `{"tokens":"5"}`, `{"tokens":1.5}`, `{"database":3}`,
				`{"file":{"maxFileSize":0.5}}`, `{"attachment":{"maxFileSize":-1}}`, `{"file":"big"}`, `{"messages":1e300}`, `[1]`, `5`,
				// The platform's zod schema: known keys and sections are optional, not nullable.
				`{"messages":null}`, `{"database":null}`, `{"database":{"files":null}}`, `{"file":{"maxFileSize":null}}`} {
				h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/create", `{"limits":`+bad+`}`)
			}
			id := h.createUser(`{"limits":{"tokens":0,"conversations":5.0,"database":{"datasets":1,"records":2,"skillsets":3,"abilities":4,"files":5,"bogus":1},` +
				`"file":{"maxFileSize":1048576,"kinds":["pdf"]},"attachment":{"maxFileSize":2048},"foo":{"bar":-1.5}}}`)
			want := `{"tokens":0,"conversations":5,"database":{"datasets":1,"records":2,"skillsets":3,"abilities":4,"files":5,"bogus":1},` +
				`"file":{"maxFileSize":1048576,"kinds":["pdf"]},"attachment":{"maxFileSize":2048},"foo":{"bar":-1.5}}`
			assert.JSONEq(t, want, mustJSON(t, h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")["limits"]))
			assert.JSONEq(t, want, mustJSON(t, h.ok("GET", "/v1/partner/user/list", "")["items"].([]any)[0].(map[string]any)["limits"]))
		}},
		{"TRAP: alias is write-only: never in a list, fetch or JSONL answer", func(t *testing.T, h *harness) {
			id := h.createUser(`{"email":"a@acme.test","alias":"acme-eu"}`)
			assert.Equal(t, "acme-eu", h.e.Alias(id))
			u := h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")
			_, has := u["alias"]
			assert.False(t, has, "fetch: %v", u)
			l := h.ok("GET", "/v1/partner/user/list", "")["items"].([]any)[0].(map[string]any)
			_, has = l["alias"]
			assert.False(t, has, "list: %v", l)
			res := h.do("GET", "/v1/partner/user/list", "", "Accept", "application/jsonl")
			assert.NotContains(t, string(res.body), "acme-eu")
		}},
		{"TRAP: an update that leaves alias out clears it (its default is null)", func(t *testing.T, h *harness) {
			id := h.createUser(`{"email":"a@acme.test","alias":"acme-eu"}`)
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"alias":"acme-eu","name":"kept"}`)
			assert.Equal(t, "acme-eu", h.e.Alias(id), "sent again: kept")
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"name":"renamed"}`)
			assert.Equal(t, "", h.e.Alias(id), "left out: cleared")
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/@acme-eu/fetch", "")
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"alias":"acme-eu"}`)
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"alias":null}`)
			assert.Equal(t, "", h.e.Alias(id), "null clears")
			h.ok("POST", "/v1/partner/user/"+id+"/update", `{"alias":""}`)
			assert.Equal(t, "", h.e.Alias(id), "empty is none")
			h.createUser(`{"alias":""}`) // two users without alias do not conflict
		}},
		{"@alias in place of the user id on fetch, update and delete; token routes take ids only", func(t *testing.T, h *harness) {
			id := h.createUser(`{"email":"a@acme.test","alias":"acme_eu-1"}`)
			h.createToken(id, `{"name":"t"}`)
			for _, prefix := range prefixes {
				u := h.ok("GET", prefix+"/user/@acme_eu-1/fetch", "")
				assert.Equal(t, id, u["id"])
			}
			h.ok("POST", "/v1/partner/user/@acme_eu-1/update", `{"alias":"acme_eu-1","name":"by alias"}`)
			assert.Equal(t, "by alias", h.e.Users()[0].Name.Value())
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/@nobody/fetch", "")
			h.fail(http.StatusNotFound, "NOT_FOUND", "POST", "/v1/partner/user/@nobody/update", `{}`)
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/@acme_eu-1/token/list", "")
			h.fail(http.StatusNotFound, "NOT_FOUND", "POST", "/v1/partner/user/@acme_eu-1/token/create", `{"name":"x"}`)
			assert.Len(t, h.e.Tokens(id), 1)
			h.ok("POST", "/v1/partner/user/@acme_eu-1/delete", `{}`)
			assert.Empty(t, h.e.Users())
			assert.Zero(t, len(h.e.Tokens(id)), "the delete by alias cascades")
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/@acme_eu-1/fetch", "")
			h.createUser(`{"alias":"acme_eu-1"}`) // freed by the delete
		}},
		{"alias: 409 CONFLICT on a duplicate, 400 outside ^[a-z0-9_-]*$ or over 128 characters", func(t *testing.T, h *harness) {
			a := h.createUser(`{"email":"a@acme.test","alias":"shared"}`)
			b := h.createUser(`{"email":"b@acme.test"}`)
			h.fail(http.StatusConflict, "CONFLICT", "POST", "/v1/partner/user/create", `{"alias":"shared"}`)
			h.fail(http.StatusConflict, "CONFLICT", "POST", "/v1/partner/user/"+b+"/update", `{"alias":"shared"}`)
			assert.Equal(t, "", h.e.Alias(b), "a refused update changes nothing")
			h.ok("POST", "/v1/partner/user/"+a+"/update", `{"name":"x"}`) // clears a's alias
			h.ok("POST", "/v1/partner/user/"+b+"/update", `{"alias":"shared"}`)
			assert.Equal(t, "shared", h.e.Alias(b))
			for _, bad := range []string{`"Acme"`, `"a.b"`, `"a b"`, `"@x"`, `"é"`, `5`, `"` + strings.Repeat("a", 129) + `"`} {
				h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/create", `{"alias":`+bad+`}`)
			}
			h.createUser(`{"alias":"` + strings.Repeat("a", 128) + `"}`)
			assert.Len(t, h.e.Users(), 3)
		}},
		{"bodies must be JSON objects of known fields; alias is accepted", func(t *testing.T, h *harness) {
			for _, bad := range []string{"", "{", "[]", "null", `"x"`, `{"metaMerge":true}`, `{"name":5}`} {
				h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/create", bad)
			}
			id := h.createUser(`{"alias":"al","name":"n"}`)
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/delete", ``)
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/token/create", `{"email":"x@y.test"}`)
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/token/create", `{"config":"x"}`)
			h.createToken(id, `{"name":"t","description":"d","meta":{"k":"v"},"config":{"any":"thing"}}`)
			assert.Len(t, h.e.Users(), 1)
			assert.Len(t, h.e.Tokens(id), 1)
		}},
		{"404 NOT_FOUND for missing users and tokens", func(t *testing.T, h *harness) {
			a := h.createUser(`{}`)
			b := h.createUser(`{}`)
			ta := h.createToken(a, `{}`)["id"].(string)
			for _, c := range []struct{ method, path, body string }{
				{"GET", "/v1/partner/user/nope/fetch", ""},
				{"POST", "/v1/partner/user/nope/update", `{}`},
				{"POST", "/v1/partner/user/nope/delete", `{}`},
				{"GET", "/v1/partner/user/nope/token/list", ""},
				{"POST", "/v1/partner/user/nope/token/create", `{}`},
				{"POST", "/v1/partner/user/nope/token/" + ta + "/update", `{}`},
				{"POST", "/v1/partner/user/" + a + "/token/nope/update", `{}`},
				{"POST", "/v1/partner/user/" + a + "/token/nope/delete", `{}`},
				{"POST", "/v1/partner/user/" + b + "/token/" + ta + "/update", `{}`}, // another user's token
				{"POST", "/v1/partner/user/" + b + "/token/" + ta + "/delete", `{}`},
			} {
				h.fail(http.StatusNotFound, "NOT_FOUND", c.method, c.path, c.body)
			}
			assert.Len(t, h.e.Tokens(a), 1)
		}},
		{"deleting a user deletes its tokens", func(t *testing.T, h *harness) {
			a := h.createUser(`{}`)
			b := h.createUser(`{}`)
			ta := h.createToken(a, `{}`)["id"].(string)
			h.createToken(b, `{}`)
			h.ok("POST", "/v1/partner/user/"+a+"/delete", `{}`)
			assert.Empty(t, h.e.Tokens(a))
			assert.Len(t, h.e.Tokens(b), 1)
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/"+a+"/token/list", "")
			h.fail(http.StatusNotFound, "NOT_FOUND", "POST", "/v1/partner/user/"+a+"/token/"+ta+"/delete", `{}`)
			h.fail(http.StatusNotFound, "NOT_FOUND", "POST", "/v1/partner/user/"+a+"/delete", `{}`)
		}},
		{"a token secret is sk- and 64 hex, shown once, never listed", func(t *testing.T, h *harness) {
			uid := h.createUser(`{}`)
			secrets := map[string]bool{}
			for range 3 {
				c := h.createToken(uid, `{"name":"ci","description":"d","meta":{"k":"v"}}`)
				s := c["token"].(string)
				assert.Regexp(t, regexp.MustCompile(`^sk-[0-9a-f]{64}$`), s)
				assert.Equal(t, float64(1700000000002+len(secrets)), c["createdAt"])
				secrets[s] = true
			}
			assert.Len(t, secrets, 3, "secrets are random")
			list := h.do("GET", "/v1/partner/user/"+uid+"/token/list", "")
			jsonl := h.do("GET", "/v1/partner/user/"+uid+"/token/list", "", "Accept", "application/jsonl")
			for s := range secrets {
				assert.NotContains(t, string(list.body), s)
				assert.NotContains(t, string(jsonl.body), s)
				assert.NotContains(t, fmt.Sprintf("%+v", h.e.Tokens(uid)), s[3:])
			}
			item := h.ok("GET", "/v1/partner/user/"+uid+"/token/list", "")["items"].([]any)[0].(map[string]any)
			assert.ElementsMatch(t, []string{"id", "createdAt", "updatedAt", "name", "description", "meta"}, slices.Collect(mapKeys(item)))
			assert.Equal(t, "ci", item["name"])
		}},
		{"token update is partial and bumps updatedAt", func(t *testing.T, h *harness) {
			uid := h.createUser(`{}`)
			tid := h.createToken(uid, `{"name":"ci","description":"d","meta":{"a":"1"}}`)["id"].(string)
			h.ok("POST", "/v1/partner/user/"+uid+"/token/"+tid+"/update", `{"description":"","meta":{"$update":{"b":"2"}}}`)
			tk := h.e.Tokens(uid)[0]
			assert.Equal(t, "ci", tk.Name.Value())
			assert.Equal(t, "", tk.Description.Value())
			assert.Equal(t, map[string]any{"a": "1", "b": "2"}, map[string]any(tk.Meta.Value()))
			assert.Greater(t, tk.UpdatedAt, tk.CreatedAt)
		}},
		{"pagination: desc by default, asc on request, take defaults to 100", func(t *testing.T, h *harness) {
			var all []string
			for i := range 150 {
				all = append(all, seedUser(t, h, fmt.Sprintf("u%03d@acme.test", i)))
			}
			first := h.ok("GET", "/v1/partner/user/list", "")
			got := ids(t, first)
			require.Len(t, got, 100)
			assert.Equal(t, reversed(all)[:100], got, "newest first")
			assert.Equal(t, got[99], first["cursor"])
			second := h.ok("GET", "/v1/partner/user/list?cursor="+got[99], "")
			assert.Equal(t, reversed(all)[100:], ids(t, second))
			assert.Equal(t, all[0], second["cursor"], "a short page carries a cursor too")
			empty := h.ok("GET", "/v1/partner/user/list?cursor="+all[0], "")
			assert.Empty(t, ids(t, empty))
			_, has := empty["cursor"]
			assert.False(t, has, "an empty page has no cursor")
			asc := h.ok("GET", "/v1/partner/user/list?order=asc&take=3", "")
			assert.Equal(t, all[:3], ids(t, asc))
			assert.Equal(t, all[3:6], ids(t, h.ok("GET", "/v1/partner/user/list?order=asc&take=3&cursor="+all[2], "")))
			assert.Equal(t, all[100:], ids(t, h.ok("GET", "/v1/partner/user/list?order=asc&cursor="+all[99], "")))
			assert.Equal(t, 100, len(ids(t, h.ok("GET", "/v1/partner/user/list?order=&take=&cursor=", ""))), "empty parameters take defaults")
		}},
		{"pagination: take is clamped to 1..100 (0 is the default, 100), must be numeric; order must be asc or desc", func(t *testing.T, h *harness) {
			for i := range 102 {
				seedUser(t, h, fmt.Sprintf("u%03d@acme.test", i))
			}
			for take, want := range map[string]int{"0": 100, "-3": 1, "1": 1, "7": 7, "100": 100, "101": 100, "1000": 100, "99999999999999999999999": 100, "-99999999999999999999999": 1} {
				assert.Len(t, ids(t, h.ok("GET", "/v1/partner/user/list?take="+take, "")), want, "take=%s", take)
			}
			for _, q := range []string{"take=abc", "take=1.5", "order=up", "order=DESC"} {
				h.fail(http.StatusBadRequest, "BAD_REQUEST", "GET", "/v1/partner/user/list?"+q, "")
			}
		}},
		{"pagination: walking pages of any size, both orders, yields every item once", func(t *testing.T, h *harness) {
			var all []string
			for i := range 23 {
				all = append(all, seedUser(t, h, fmt.Sprintf("u%02d@acme.test", i)))
			}
			for _, order := range []string{"asc", "desc"} {
				for _, take := range []int{1, 2, 5, 23, 100} {
					var got []string
					cursor := ""
					for calls := 0; ; calls++ {
						require.Less(t, calls, 30)
						p := h.ok("GET", fmt.Sprintf("/v1/partner/user/list?order=%s&take=%d&cursor=%s", order, take, cursor), "")
						page := ids(t, p)
						if len(page) == 0 {
							assert.NotContains(t, p, "cursor")
							break
						}
						assert.Equal(t, page[len(page)-1], p["cursor"])
						got = append(got, page...)
						cursor = p["cursor"].(string)
					}
					want := all
					if order == "desc" {
						want = reversed(all)
					}
					assert.Equal(t, want, got, "order=%s take=%d", order, take)
				}
			}
		}},
		{"pagination: same createdAt sorts by id; a deleted cursor selects nothing (the trap); an unknown one is 400", func(t *testing.T, h *harness) {
			var all []string
			for i := range 6 {
				u, err := h.e.PutUser(stateUser(fmt.Sprintf("u%d@acme.test", i), 42))
				require.NoError(t, err)
				all = append(all, u.ID)
			}
			sorted := slices.Clone(all)
			slices.Sort(sorted)
			assert.Equal(t, sorted, ids(t, h.ok("GET", "/v1/partner/user/list?order=asc", "")))
			p := h.ok("GET", "/v1/partner/user/list?order=asc&take=2", "")
			h.ok("POST", "/v1/partner/user/"+p["cursor"].(string)+"/delete", `{}`)
			// As on the platform (Prisma cursor + skip 1): the page after a deleted
			// cursor is empty, in both orders, and has no cursor, like the real end.
			for _, order := range []string{"asc", "desc"} {
				gone := h.ok("GET", "/v1/partner/user/list?order="+order+"&take=2&cursor="+p["cursor"].(string), "")
				assert.Empty(t, ids(t, gone), order)
				assert.NotContains(t, gone, "cursor", order)
			}
			assert.Equal(t, sorted[2:4], ids(t, h.ok("GET", "/v1/partner/user/list?order=asc&take=2&cursor="+sorted[0], "")), "from a live item the list goes on")
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "GET", "/v1/partner/user/list?cursor=never-existed", "")
		}},
		{"token lists paginate the same way", func(t *testing.T, h *harness) {
			uid := h.createUser(`{}`)
			other := h.createUser(`{}`)
			otherTok := h.createToken(other, `{}`)["id"].(string)
			var all []string
			for range 5 {
				all = append(all, h.createToken(uid, `{}`)["id"].(string))
			}
			p := h.ok("GET", "/v1/partner/user/"+uid+"/token/list?take=2", "")
			assert.Equal(t, reversed(all)[:2], ids(t, p))
			assert.Equal(t, reversed(all)[2:4], ids(t, h.ok("GET", "/v1/partner/user/"+uid+"/token/list?take=2&cursor="+p["cursor"].(string), "")))
			last := h.ok("GET", "/v1/partner/user/"+uid+"/token/list?order=asc&take=100&cursor="+all[2], "")
			assert.Equal(t, all[3:], ids(t, last))
			assert.Equal(t, all[4], last["cursor"])
			h.fail(http.StatusBadRequest, "BAD_REQUEST", "GET", "/v1/partner/user/"+uid+"/token/list?cursor="+otherTok, "")
			empty := h.ok("GET", "/v1/partner/user/"+other+"/token/list?cursor="+otherTok, "")
			assert.Empty(t, ids(t, empty))
			assert.NotContains(t, empty, "cursor")
		}},
		{"filters: email case-insensitive, meta.K=V with nesting", func(t *testing.T, h *harness) {
			a := h.createUser(`{"email":"Alice@Acme.test","meta":{"team":"sales","n":3,"deep":{"k":"v"},"on":true}}`)
			b := h.createUser(`{"email":"bob@acme.test","meta":{"team":"ops","deep":{"k":"w"}}}`)
			c := h.createUser(`{"email":"carol@acme.test","meta":{"team":"sales"}}`)
			h.createUser(`{}`)
			for q, want := range map[string][]string{
				"email=alice@acme.TEST":                 {a},
				"email=nobody@acme.test":                {},
				"meta.team=sales":                       {c, a},
				"meta.team=sales&order=asc&take=1":      {a},
				"meta.team=sales&email=carol@acme.test": {c},
				"meta.n=3":                              {a},
				"meta.on=true":                          {a},
				"meta.deep.k=w":                         {b},
				"meta.deep=v":                           {},
				"meta.missing=x":                        {},
				// The bracket form, as the platform's filter also reads it.
				"meta[team]=sales":           {c, a},
				"meta[deep][k]=w":            {b},
				"meta[deep.k]=w":             {b},
				"meta[on]=false":             {},
				"meta[team]=sales&meta[n]=3": {a},
			} {
				p := h.ok("GET", "/v1/partner/user/list?"+q, "")
				assert.Equal(t, want, ids(t, p), q)
				if len(want) == 0 {
					assert.NotContains(t, p, "cursor", q)
				}
			}
			// A filtered page continues after its cursor.
			p := h.ok("GET", "/v1/partner/user/list?meta.team=sales&take=1", "")
			assert.Equal(t, []string{a}, ids(t, h.ok("GET", "/v1/partner/user/list?meta.team=sales&take=1&cursor="+p["cursor"].(string), "")))

			// Token lists take the meta filter too, in both forms; booleans match "true".
			t1 := h.ok("POST", "/v1/partner/user/"+a+"/token/create", `{"name":"ci","meta":{"purpose":"ci","live":true}}`)["id"].(string)
			t2 := h.ok("POST", "/v1/partner/user/"+a+"/token/create", `{"name":"ops","meta":{"purpose":"ops"}}`)["id"].(string)
			for q, want := range map[string][]string{
				"meta.purpose=ci":   {t1},
				"meta[purpose]=ops": {t2},
				"meta.live=true":    {t1},
				"meta[live]=false":  {},
				"order=asc":         {t1, t2},
			} {
				assert.Equal(t, want, ids(t, h.ok("GET", "/v1/partner/user/"+a+"/token/list?"+q, "")), q)
			}
		}},
		{"Accept: application/jsonl streams every item, with filters and order; take caps the stream", func(t *testing.T, h *harness) {
			var all []string
			for i := range 230 {
				all = append(all, seedUser(t, h, fmt.Sprintf("u%03d@acme.test", i)))
			}
			r := h.do("GET", "/api/v1/partner/user/list", "", "Accept", "application/jsonl")
			require.Equal(t, http.StatusOK, r.status)
			assert.Equal(t, "application/jsonl", r.header.Get("Content-Type"))
			types, got := readJSONL(t, r.body)
			assert.NotContains(t, types, "nop", "no leading keep-alive: the platform sends one only after ~16.7 s of silence")
			assert.Equal(t, reversed(all), got, "all items, beyond one page, newest first")
			for take, want := range map[string]int{"5": 5, "0": 100, "100": 100, "1000": 100} {
				r = h.do("GET", "/api/v1/partner/user/list?take="+take, "", "Accept", "application/jsonl")
				_, got = readJSONL(t, r.body)
				assert.Equal(t, reversed(all)[:want], got, "take=%s caps the whole stream", take)
			}

			r = h.do("GET", "/v1/partner/user/list?order=asc&meta.i=7", "", "Accept", "application/json, application/jsonl;q=0.9")
			_, got = readJSONL(t, r.body)
			assert.Equal(t, []string{all[7]}, got)

			uid := all[0]
			tid := h.createToken(uid, `{}`)["id"].(string)
			r = h.do("GET", "/v1/partner/user/"+uid+"/token/list", "", "Accept", "application/jsonl")
			_, got = readJSONL(t, r.body)
			assert.Equal(t, []string{tid}, got)
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/nope/token/list", "")
		}},
		{"counts over HTTP and their reset", func(t *testing.T, h *harness) {
			h.createUser(`{}`)
			h.ok("GET", "/v1/partner/user/list", "")
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/x/fetch", "")
			m := h.ok("GET", "/_emulator/counts", "")
			calls := m["calls"].(map[string]any)
			assert.Len(t, calls, 9)
			assert.Equal(t, float64(1), calls["user.create"])
			assert.Equal(t, float64(1), calls["user.list"])
			assert.Equal(t, float64(1), calls["user.fetch"], "a 404 still reached the operation")
			assert.Equal(t, map[string]any{"5xx": 0.0, "429": 0.0, "lost": 0.0, "bad_body": 0.0, "quota": 0.0, "writer_delete": 0.0, "poll_limit": 0.0}, m["faults"])
			h.ok("POST", "/_emulator/reset-counts", "")
			assert.Zero(t, h.e.Counts()["user.create"])
			h.fail(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "POST", "/_emulator/counts", "")
			h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/_emulator/nope", "")
			req, err := http.NewRequest("GET", h.srv.URL+"/_emulator/counts", nil)
			require.NoError(t, err)
			resp, err := h.srv.Client().Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		}},
		{"PutUser and PutToken seed like a create", func(t *testing.T, h *harness) {
			u, err := h.e.PutUser(stateUser("a@acme.test", 0))
			require.NoError(t, err)
			assert.NotEmpty(t, u.ID)
			assert.NotZero(t, u.CreatedAt)
			assert.True(t, u.Name.IsNull(), "unset fields become null")
			_, err = h.e.PutUser(stateUser("A@ACME.test", 0))
			assert.ErrorContains(t, err, "CONFLICT")
			_, err = h.e.PutUser(stateUser("not an email", 0))
			assert.ErrorContains(t, err, "BAD_REQUEST")
			tk, err := h.e.PutToken(u.ID, stateToken("old", 1000))
			require.NoError(t, err)
			assert.Equal(t, int64(1000), tk.CreatedAt)
			assert.Equal(t, int64(1000), tk.UpdatedAt)
			_, err = h.e.PutToken("nope", stateToken("x", 0))
			assert.ErrorContains(t, err, "NOT_FOUND")
			item := h.ok("GET", "/v1/partner/user/"+u.ID+"/token/list", "")["items"].([]any)[0].(map[string]any)
			assert.Equal(t, float64(1000), item["createdAt"])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newHarness(t, Options{}))
		})
	}
}

func fetchMeta(t *testing.T, h *harness, id string) any {
	t.Helper()
	return h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")["meta"]
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// seedUser creates a user over HTTP, with its index in meta.i for filter tests.
func seedUser(t *testing.T, h *harness, email string) string {
	t.Helper()
	var i int
	_, _ = fmt.Sscanf(strings.TrimLeft(email, "u"), "%d", &i)
	return h.createUser(fmt.Sprintf(`{"email":%q,"meta":{"i":"%d"}}`, email, i))
}

// readJSONL splits a JSON-lines body into the line types and the item ids.
func readJSONL(t *testing.T, body []byte) (types, ids []string) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Type string `json:"type"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), sc.Text())
		types = append(types, line.Type)
		if line.Type == "item" {
			ids = append(ids, line.Data.ID)
		}
	}
	require.NoError(t, sc.Err())
	return types, ids
}
