package emulator

import (
	"net/http"
	"testing"
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
