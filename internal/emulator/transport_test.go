package emulator

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The emulator serves one path family, the hosted one by default (where the SDKs
// send too); every other family's path is a 404, as on a deployment of the other kind.
func TestPathFamilies(t *testing.T) {
	for _, tc := range []struct {
		paths           Paths
		partner, userFa bool
	}{
		{"", true, false},
		{PathsPartner, true, false},
		{PathsUser, false, true},
		{PathsBoth, true, true},
	} {
		t.Run(string(tc.paths), func(t *testing.T) {
			h := newHarness(t, Options{Paths: tc.paths})
			for i, p := range []struct {
				prefix string
				served bool
			}{{"/v1/partner/user/", tc.partner}, {"/api/v1/partner/user/", tc.partner}, {"/api/v1/user/", tc.userFa}} {
				if !p.served {
					h.fail(http.StatusNotFound, "NOT_FOUND", "GET", p.prefix+"list", "")
					h.fail(http.StatusNotFound, "NOT_FOUND", "POST", p.prefix+"create", `{"email":"x@acme.test"}`)
					continue
				}
				id := h.ok("POST", p.prefix+"create", `{"email":"u`+strconv.Itoa(i)+`@acme.test"}`)["id"].(string)
				h.ok("GET", p.prefix+id+"/fetch", "")
				h.ok("POST", p.prefix+id+"/token/create", `{"name":"ci"}`)
				require.Len(t, h.ok("GET", p.prefix+id+"/token/list", "")["items"], 1)
			}
			require.Zero(t, h.e.Counts()["user.list"], "unserved paths are not counted")
		})
	}
	_, err := New(Options{Token: testToken, Paths: "hosted"})
	require.ErrorContains(t, err, "want partner, user or both")
}

// A user of another partner account is in no listing, and every route naming it
// answers 403 NOT_AUTHORIZED (a missing user is 404); it survives a save and load.
func TestForeignUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path})
	_, err := h.e.PutUser(state.User{Email: state.Some("mine@acme.test")})
	require.NoError(t, err)
	require.NoError(t, h.e.PutForeignUser("u-foreign"))
	require.Error(t, h.e.PutForeignUser("u-foreign"), "an id is used once")
	require.NoError(t, h.e.Save())

	e2, err := New(Options{Token: testToken, StatePath: path})
	require.NoError(t, err)
	srv2 := httptest.NewServer(e2)
	t.Cleanup(srv2.Close)
	for _, h := range []*harness{h, {t: t, e: e2, srv: srv2}} {
		require.Len(t, h.ok("GET", "/v1/partner/user/list", "")["items"], 1)
		const p = "/v1/partner/user/u-foreign/"
		h.fail(http.StatusForbidden, "NOT_AUTHORIZED", "GET", p+"fetch", "")
		h.fail(http.StatusForbidden, "NOT_AUTHORIZED", "POST", p+"update", `{"name":"x"}`)
		h.fail(http.StatusForbidden, "NOT_AUTHORIZED", "POST", p+"delete", `{}`)
		h.fail(http.StatusForbidden, "NOT_AUTHORIZED", "GET", p+"token/list", "")
		h.fail(http.StatusForbidden, "NOT_AUTHORIZED", "POST", p+"token/create", `{"name":"x"}`)
		h.fail(http.StatusForbidden, "NOT_AUTHORIZED", "POST", p+"token/t1/update", `{"name":"x"}`)
		h.fail(http.StatusForbidden, "NOT_AUTHORIZED", "POST", p+"token/t1/delete", `{}`)
		h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/u-missing/fetch", "")
	}
}
