package emulator

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestPlatformEmailSyntax: the emulator refuses what the platform's Joi check refuses,
// where Go's net/mail (which it used before) accepted all four.
func TestPlatformEmailSyntax(t *testing.T) {
	h := newHarness(t, Options{})
	for _, email := range []string{"a@localhost", "b@x_y.test", "c@[1.2.3.4]", "d@-x.test"} {
		h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/create", `{"email":"`+email+`"}`)
	}
	id := h.createUser(`{"email":"ok@acme.test"}`)
	h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/update", `{"email":"a@localhost"}`)
}

// TestPlatformTokenTextIsNotNull: a token's name and description are non-null columns
// (default ""): a token created without them lists "", and a null fails inside the
// database with a 500, on create and update alike, changing nothing.
func TestPlatformTokenTextIsNotNull(t *testing.T) {
	h := newHarness(t, Options{})
	uid := h.createUser(`{}`)
	tid := h.createToken(uid, `{}`)["id"].(string)
	item := h.ok("GET", "/v1/partner/user/"+uid+"/token/list", "")["items"].([]any)[0].(map[string]any)
	assert.Equal(t, "", item["name"])
	assert.Equal(t, "", item["description"])
	for _, body := range []string{`{"name":null}`, `{"description":null}`, `{"name":"ci","description":null}`} {
		h.fail(http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "POST", "/v1/partner/user/"+uid+"/token/create", body)
		h.fail(http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "POST", "/v1/partner/user/"+uid+"/token/"+tid+"/update", body)
	}
	assert.Len(t, h.e.Tokens(uid), 1)
}

// TestPlatformLimitsRefuseNull: the platform's limits schema makes known keys and
// sections optional, not nullable; one null fails the whole update, which changes
// nothing.
func TestPlatformLimitsRefuseNull(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.createUser(`{"name":"A","limits":{"tokens":5}}`)
	for _, l := range []string{`{"tokens":null}`, `{"database":null}`, `{"database":{"files":null}}`, `{"attachment":{"maxFileSize":null}}`} {
		h.fail(http.StatusBadRequest, "BAD_REQUEST", "POST", "/v1/partner/user/"+id+"/update", `{"name":"B","limits":`+l+`}`)
	}
	u := h.e.Users()[0]
	assert.Equal(t, "A", u.Name.Value())
	assert.Equal(t, 5.0, u.Limits.Value()["tokens"])
	h.ok("POST", "/v1/partner/user/"+id+"/update", `{"limits":{"foo":null,"database":{"bogus":null}}}`) // unknown keys are stored as sent
}

// TestPlatformSmallerRules: one 409 body for a duplicate email and a duplicate alias;
// "$update" on a create is stored literally; "#" keys are hidden in limits too.
func TestPlatformSmallerRules(t *testing.T) {
	h := newHarness(t, Options{})
	h.createUser(`{"email":"a@acme.test","alias":"acme-a"}`)
	dupEmail := h.fail(http.StatusConflict, "CONFLICT", "POST", "/v1/partner/user/create", `{"email":"a@acme.test"}`)
	dupAlias := h.fail(http.StatusConflict, "CONFLICT", "POST", "/v1/partner/user/create", `{"email":"b@acme.test","alias":"acme-a"}`)
	assert.Equal(t, string(dupEmail.body), string(dupAlias.body), "a client cannot tell which was taken")

	id := h.createUser(`{"meta":{"$update":{"k":"v"}},"limits":{"tokens":1,"#secret":2,"foo":{"#x":1,"y":2}}}`)
	u := h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")
	assert.Equal(t, map[string]any{"$update": map[string]any{"k": "v"}}, u["meta"])
	assert.Equal(t, map[string]any{"tokens": 1.0, "foo": map[string]any{"y": 2.0}}, u["limits"])
}
