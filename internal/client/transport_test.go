package client

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

const notFoundHTML = `<!DOCTYPE html><html><body>404: This page could not be found</body></html>`

func auto(o *Options) { o.Paths = PathsAuto }

// A deployment that serves the partner family: the first listing decides it, with no
// request to the other family, and writes follow it.
func TestPathsAutoPartner(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/list?order=asc&take=100", reply(200, page(usersJSON(0, 3), "u2")))
	r.on("POST", "/v1/partner/user/create", reply(200, `{"id":"u9"}`))
	c := newTestClient(t, r, auto)
	require.Equal(t, PathsAuto, c.Paths())
	n := 0
	for _, err := range c.ListUsers(context.Background(), ListOptions{Order: "asc"}) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 3, n)
	assert.Equal(t, PathsPartner, c.Paths())
	_, err := c.CreateUser(context.Background(), state.UserFields{})
	require.NoError(t, err)
}

// A self-hosted platform serves /api/v1/user/...: the first listing's 404 makes the
// client try the other family once, keep it, and send every later request there.
func TestPathsAutoUser(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/list?order=asc&take=100", reply(404, notFoundHTML, "Content-Type", "text/html"))
	r.on("GET", "/api/v1/user/list?order=asc&take=100", reply(200, page(usersJSON(0, 2), "u1")))
	r.on("GET", "/api/v1/user/u1/token/list?order=asc&take=100", reply(200, page(`[]`, "")))
	r.on("POST", "/api/v1/user/create", reply(200, `{"id":"u9"}`))
	r.on("POST", "/api/v1/user/u9/token/create", reply(200, `{"id":"t1","token":"sk-x","createdAt":1}`))
	c := newTestClient(t, r, auto)
	a, err := c.ReadActual(context.Background(), func(u state.User) bool { return u.ID == "u1" })
	require.NoError(t, err)
	assert.Len(t, a.Users, 2)
	assert.Equal(t, PathsUser, c.Paths())
	id, err := c.CreateUser(context.Background(), state.UserFields{})
	require.NoError(t, err)
	_, err = c.CreateToken(context.Background(), id, state.TokenFields{})
	require.NoError(t, err)
	assert.Zero(t, c.Stats().Retries, "the second family is not a retry")
}

// A write that comes before any read never goes out on a guess: a one-item listing
// decides the family first, so no POST reaches the wrong family's paths.
func TestPathsAutoWriteWaitsForTheFamily(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/list?take=1", reply(404, `{"message":"no such route","code":"NOT_FOUND"}`))
	r.on("GET", "/api/v1/user/list?take=1", reply(200, page(usersJSON(0, 1), "u0")))
	r.on("POST", "/api/v1/user/u0/update", reply(200, `{"id":"u0"}`))
	c := newTestClient(t, r, auto)
	require.NoError(t, c.UpdateUser(context.Background(), "u0", state.UserFields{Name: state.Some("x")}))
	assert.Equal(t, PathsUser, c.Paths())
}

// Neither family answers: the listing fails naming both URLs, the family stays
// unknown, and a write after it is never sent.
func TestPathsAutoNeitherFamily(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/list?take=100", reply(404, notFoundHTML, "Content-Type", "text/html"))
	r.on("GET", "/api/v1/user/list?take=100", reply(404, notFoundHTML, "Content-Type", "text/html"))
	r.on("GET", "/v1/partner/user/list?take=1", reply(404, notFoundHTML, "Content-Type", "text/html"))
	r.on("GET", "/api/v1/user/list?take=1", reply(404, notFoundHTML, "Content-Type", "text/html"))
	c := newTestClient(t, r, auto)
	var err error
	for _, e := range c.ListUsers(context.Background(), ListOptions{}) {
		err = e
	}
	require.Error(t, err)
	assert.True(t, IsNotFound(err), "%v", err)
	assert.Contains(t, err.Error(), "neither "+r.srv.URL+"/v1/partner/user/list?take=100 nor "+r.srv.URL+"/api/v1/user/list?take=100 exists")
	assert.Equal(t, PathsAuto, c.Paths())
	_, err = c.CreateUser(context.Background(), state.UserFields{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "finding the API paths before a write")
	assert.Zero(t, c.Stats().Calls[OpUserCreate])
}

// A fetch answered 404 by both families may be a missing user: it is NotFound, and
// the family stays undecided for the next request.
func TestPathsAutoFetchNotFoundDecidesNothing(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(404, `{"message":"user not found","code":"NOT_FOUND"}`))
	r.on("GET", "/api/v1/user/u1/fetch", reply(404, notFoundHTML))
	r.on("GET", "/v1/partner/user/u2/fetch", reply(200, `{"id":"u2"}`))
	c := newTestClient(t, r, auto)
	_, err := c.FetchUser(context.Background(), "u1")
	assert.True(t, IsNotFound(err), "%v", err)
	assert.Equal(t, PathsAuto, c.Paths())
	_, err = c.FetchUser(context.Background(), "u2")
	require.NoError(t, err)
	assert.Equal(t, PathsPartner, c.Paths())
}

// Forced families send only to their own paths; a 404 on the listing says how to
// find the right ones. A base URL ending in /api is not given a second /api.
func TestPathsForced(t *testing.T) {
	t.Run("partner", func(t *testing.T) {
		r := newRegistry(t)
		r.on("GET", "/v1/partner/user/list?take=100", reply(404, notFoundHTML))
		c := newTestClient(t, r, func(o *Options) { o.Paths = PathsPartner })
		var err error
		for _, e := range c.ListUsers(context.Background(), ListOptions{}) {
			err = e
		}
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the API paths are set to partner")
		assert.Contains(t, err.Error(), "--api-paths auto")
	})
	for _, base := range []string{"", "/api", "/api/"} {
		t.Run("user"+base, func(t *testing.T) {
			r := newRegistry(t)
			r.on("GET", "/api/v1/user/u1/fetch", reply(200, `{"id":"u1"}`))
			r.on("POST", "/api/v1/user/u1/token/t1/delete", reply(200, `{"id":"t1"}`))
			c := newTestClient(t, r, func(o *Options) { o.Paths = PathsUser; o.BaseURL += base })
			assert.Equal(t, PathsUser, c.Paths())
			_, err := c.FetchUser(context.Background(), "u1")
			require.NoError(t, err)
			require.NoError(t, c.DeleteToken(context.Background(), "u1", "t1"))
		})
	}
	_, err := ParsePathFamily("users")
	assert.ErrorContains(t, err, "want auto, partner or user")
	_, err = New(Options{Paths: "users"})
	assert.ErrorContains(t, err, "want auto, partner or user")
}

// Another partner's user answers 403: reported as such, sent once, and never taken
// for a deleted user (a delete that meets it failed).
func TestForbiddenIsNotNotFound(t *testing.T) {
	const body = `{"message":"not authorized","code":"NOT_AUTHORIZED"}`
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/ux/fetch", reply(403, body))
	r.on("POST", "/v1/partner/user/ux/update", reply(403, body))
	r.on("POST", "/v1/partner/user/ux/delete", reply(403, body))
	r.on("POST", "/v1/partner/user/ux/token/tx/delete", reply(403, body))
	r.on("GET", "/v1/partner/user/list?order=asc&take=100", reply(200, page(`[{"id":"ux","createdAt":1}]`, "ux")))
	r.on("GET", "/v1/partner/user/ux/token/list?order=asc&take=100", reply(403, body))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = 0 })
	ctx := context.Background()
	_, fetchErr := c.FetchUser(ctx, "ux")
	updateErr := c.UpdateUser(ctx, "ux", state.UserFields{Name: state.Some("n")})
	deleteErr := c.DeleteUser(ctx, "ux")
	revokeErr := c.DeleteToken(ctx, "ux", "tx")
	_, readErr := c.ReadActual(ctx, func(state.User) bool { return true })
	for name, err := range map[string]error{"fetch": fetchErr, "update": updateErr, "delete": deleteErr, "revoke": revokeErr, "read": readErr} {
		require.Error(t, err, name)
		assert.True(t, IsForbidden(err), "%s: %v", name, err)
		assert.False(t, IsNotFound(err), "%s: %v", name, err)
		assert.Contains(t, err.Error(), "another partner account", name)
	}
	assert.Zero(t, c.Stats().Retries)
}

// The API never redirects; a redirect is reported, not followed, so the token never
// reaches the server it points to, whatever its port or scheme.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var otherHits, otherAuth atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		if r.Header.Get("Authorization") != "" {
			otherAuth.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[],"id":"evil"}`))
	}))
	t.Cleanup(other.Close)
	redirect := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path+"?leak="+testToken, http.StatusTemporaryRedirect)
	}

	check := func(t *testing.T, c *Client) {
		t.Helper()
		var listErr error
		for _, err := range c.ListUsers(context.Background(), ListOptions{}) {
			listErr = err
		}
		_, createErr := c.CreateUser(context.Background(), state.UserFields{})
		for _, err := range []error{listErr, createErr} {
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrRedirect), "%v", err)
			assert.Contains(t, err.Error(), "the API does not redirect")
			assert.Contains(t, err.Error(), "pointing to "+other.URL)
			assert.NotContains(t, err.Error(), testToken)
			assert.False(t, IsLost(err), "a redirect is an answer: %v", err)
		}
		assert.Zero(t, otherHits.Load(), "the other server got a request")
		assert.Zero(t, otherAuth.Load(), "the other server got the token")
		assert.Equal(t, int64(1), c.Stats().Calls[OpUserList], "not retried")
	}

	t.Run("another port", func(t *testing.T) {
		r := newRegistry(t)
		r.on("GET", "/v1/partner/user/list?take=100", redirect)
		r.on("POST", "/v1/partner/user/create", redirect)
		check(t, newTestClient(t, r).Client)
	})
	t.Run("https to http", func(t *testing.T) {
		tlsSrv := httptest.NewTLSServer(http.HandlerFunc(redirect))
		t.Cleanup(tlsSrv.Close)
		// The caller's own client (trusting the test certificate) is not followed
		// either: New copies it without its redirect policy.
		hc := tlsSrv.Client()
		c, err := New(Options{BaseURL: tlsSrv.URL, Token: state.Secret(testToken), Paths: PathsPartner, HTTPClient: hc, RetryMaxElapsed: 1})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(tlsSrv.URL, "https://127.0.0.1:"))
		check(t, c)
		assert.Nil(t, hc.CheckRedirect, "the caller's client is not changed")
	})
}

// Errors that waiting cannot heal are not retried and say what failed and where.
func TestUnreachableFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(untrusted.Close)
	noSuchHost := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "api.chatbotkit.invalid", IsNotFound: true}}
	}}}

	for name, tc := range map[string]struct {
		base string
		hc   *http.Client
		want string
	}{
		"refused":      {closed, nil, "cannot reach the API at " + closed + ": the connection was refused"},
		"plain http":   {strings.Replace(plain.URL, "http:", "https:", 1), nil, "the server answered plain HTTP to a TLS (https://) request"},
		"untrusted":    {untrusted.URL, nil, "its TLS certificate is not valid for this host or not trusted"},
		"no such host": {"https://api.chatbotkit.invalid", noSuchHost, "cannot reach the API at https://api.chatbotkit.invalid: the host name does not resolve"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := New(Options{BaseURL: tc.base, Token: state.Secret(testToken), HTTPClient: tc.hc})
			require.NoError(t, err)
			var listErr error
			for _, err := range c.ListUsers(context.Background(), ListOptions{}) {
				listErr = err
			}
			require.Error(t, listErr)
			assert.True(t, IsUnreachable(listErr), "%v", listErr)
			assert.Contains(t, listErr.Error(), tc.want)
			assert.Contains(t, listErr.Error(), "not retried: check")
			assert.Equal(t, int64(1), c.Stats().Total(), "sent once")
			assert.Zero(t, c.Stats().Retries)
		})
	}
}

// An error body is redacted before it is cut: a token that straddles the cut must
// not leave its first part behind (nor does a cut snippet of a 2xx body).
func TestTokenRedactedBeforeTruncation(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(400, strings.Repeat("x", 180)+" "+testToken+" "+strings.Repeat("y", 40), "Content-Type", "text/plain"))
	r.on("GET", "/v1/partner/user/u2/fetch", reply(200, "<html>"+strings.Repeat("a", 60)+testToken+"</html>", "Content-Type", "text/html")).n(4)
	c := newTestClient(t, r)
	for _, id := range []string{"u1", "u2"} {
		_, err := c.FetchUser(context.Background(), id)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), testToken[:state.MinFragment], id)
		assert.Contains(t, err.Error(), "[REDACTED]", id)
	}
}

// A server that echoes the token encoded (base64, as an Authorization header dump
// would show it; hex; upper case) must not get it into an error either.
func TestTokenRedactedInEncodedForms(t *testing.T) {
	r := newRegistry(t)
	bodies := map[string]string{
		"u1": "bad header: " + base64.StdEncoding.EncodeToString([]byte("Bearer "+testToken)),
		"u2": "bad header: " + hex.EncodeToString([]byte(testToken)),
		"u3": "bad header: " + strings.ToUpper(testToken),
	}
	for id, body := range bodies {
		r.on("GET", "/v1/partner/user/"+id+"/fetch", reply(400, body, "Content-Type", "text/plain"))
	}
	c := newTestClient(t, r)
	for id := range bodies {
		_, err := c.FetchUser(context.Background(), id)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "[REDACTED]", id)
		assert.False(t, state.NewRedactor(testToken).Contains(err.Error()), "%s: %s", id, err)
	}
}
