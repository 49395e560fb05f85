package emulator

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

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

// The poll limit as the platform answers it: every list request (a JSON page, a whole
// JSONL stream) counts once in a sliding window, account-wide; over the limit the
// answer is 429 LIMITS_REACHED "rate/poll" without X-Failure-Code or Retry-After; a
// refused poll is not counted; fetches and writes are never limited.
func TestPollLimit(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{PollLimit: 3, PollWindow: 10 * time.Second}})
	now := time.Unix(1_800_000_000, 0)
	h.e.pollNow = func() time.Time { return now }
	id := h.createUser(`{"email":"a@acme.test"}`)

	h.ok("GET", "/v1/partner/user/list", "")
	r := h.do("GET", "/v1/partner/user/list", "", "Accept", "application/jsonl")
	require.Equal(t, http.StatusOK, r.status)
	now = now.Add(4 * time.Second)
	h.ok("GET", "/v1/partner/user/"+id+"/token/list", "")
	for range 3 {
		r := h.fail(http.StatusTooManyRequests, "LIMITS_REACHED", "GET", "/v1/partner/user/list", "")
		require.Equal(t, "You have exceeded your allocated rate limits: rate/poll", r.json(t)["message"])
		require.Empty(t, r.header.Get("X-Failure-Code"))
		require.Empty(t, r.header.Get("Retry-After"))
		r = h.do("GET", "/v1/partner/user/list", "", "Accept", "application/jsonl")
		require.Equal(t, http.StatusTooManyRequests, r.status)
		require.Equal(t, "LIMITS_REACHED", r.json(t)["code"])
	}
	h.ok("GET", "/v1/partner/user/"+id+"/fetch", "")
	h.ok("POST", "/v1/partner/user/"+id+"/update", `{"name":"not a poll"}`)
	h.createUser(`{"email":"b@acme.test"}`)

	// The window slides: at +10 s the first two polls leave it (the one at +4 s stays),
	// so exactly two more are admitted; the refused ones never counted.
	now = now.Add(6 * time.Second)
	h.ok("GET", "/v1/partner/user/list", "")
	h.ok("GET", "/v1/partner/user/"+id+"/token/list", "")
	h.fail(http.StatusTooManyRequests, "LIMITS_REACHED", "GET", "/v1/partner/user/list", "")
	now = now.Add(4 * time.Second)
	h.ok("GET", "/v1/partner/user/list", "")

	admitted, rejected := h.e.PollCounts()
	require.Equal(t, int64(6), admitted)
	require.Equal(t, int64(7), rejected)
	require.Equal(t, int64(7), h.e.FaultCounts()["poll_limit"])
	require.Equal(t, int64(11), h.e.Counts()["user.list"], "refused polls are calls, just not polls")
	m := h.ok("GET", "/_emulator/counts", "")
	require.Equal(t, map[string]any{"admitted": 6.0, "rejected": 7.0, "limit": 3.0, "window_ms": 10000.0}, m["polls"])
}

// On by default, at a limit nothing ordinary reaches; off with a negative limit.
func TestPollLimitDefault(t *testing.T) {
	limit, window := Faults{}.pollLimit()
	require.Equal(t, DefaultPollLimit, limit)
	require.Equal(t, time.Minute, window)
	limit, _ = Faults{PollLimit: -1}.pollLimit()
	require.Zero(t, limit)
	h := newHarness(t, Options{})
	h.e.pollNow = func() time.Time { return time.Unix(1_800_000_000, 0) }
	for range DefaultPollLimit {
		h.ok("GET", "/v1/partner/user/list", "")
	}
	h.fail(http.StatusTooManyRequests, "LIMITS_REACHED", "GET", "/v1/partner/user/list", "")
}
