package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

const usersPath = "/v1/partner/user/list"

func collect[T any](t *testing.T, seq func(func(T, error) bool)) ([]T, error) {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

func TestNewRefusesInsecureURLs(t *testing.T) {
	for _, u := range []string{"http://api.chatbotkit.com", "http://10.0.0.1:8080", "http://example.test/api"} {
		_, err := New(Options{BaseURL: u})
		assert.ErrorIs(t, err, ErrInsecureURL, u)
	}
	for _, u := range []string{"", "https://api.chatbotkit.com", "http://localhost:8080", "http://127.0.0.1", "http://127.1.2.3:9", "http://[::1]:8080/api"} {
		_, err := New(Options{BaseURL: u})
		assert.NoError(t, err, u)
	}
	for _, u := range []string{"ftp://x", "api.chatbotkit.com", "https://user:pw@x.test"} {
		_, err := New(Options{BaseURL: u})
		assert.Error(t, err, u)
	}
	_, err := New(Options{Token: "sk-1\nX-Evil: 1"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "sk-1")
}

func TestRequestHeadersAndBodies(t *testing.T) {
	r := newRegistry(t)
	r.on("POST", "/v1/partner/user/create", func(w http.ResponseWriter, req *http.Request) {
		assert.Equal(t, "Bearer "+testToken, req.Header.Get("Authorization"))
		assert.Equal(t, "cbk-sync/1.2.3", req.Header.Get("User-Agent"))
		assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
		reply(200, `{"id":"u1"}`)(w, req)
	})
	r.on("GET", "/v1/partner/user/u1/fetch", func(w http.ResponseWriter, req *http.Request) {
		assert.Equal(t, "Bearer "+testToken, req.Header.Get("Authorization"))
		assert.Equal(t, "cbk-sync/1.2.3", req.Header.Get("User-Agent"))
		assert.Equal(t, "application/json", req.Header.Get("Accept"))
		reply(200, `{"id":"u1"}`)(w, req)
	})
	r.on("POST", "/v1/partner/user/u1/delete", reply(200, `{"id":"u1"}`))
	c := newTestClient(t, r, func(o *Options) { o.UserAgent = "cbk-sync/1.2.3" })
	ctx := context.Background()

	id, err := c.CreateUser(ctx, state.UserFields{Email: state.Some("a@acme.test"), Name: state.Null[string](), Meta: state.Some(state.Meta{"k": "v"}), MetaMerge: true})
	require.NoError(t, err)
	assert.Equal(t, "u1", id)
	_, err = c.FetchUser(ctx, "u1")
	require.NoError(t, err)
	require.NoError(t, c.DeleteUser(ctx, "u1"))

	assert.JSONEq(t, `{"email":"a@acme.test","name":null,"meta":{"$update":{"k":"v"}}}`, string(r.bodies[0]))
	assert.JSONEq(t, `{}`, string(r.bodies[2]))
}

func TestBaseURLPathIsKeptAndIDsAreEscaped(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/api/v1/partner/user/a%2Fb%3Fc/fetch", reply(200, `{"id":"a/b?c"}`))
	r.on("POST", "/api/v1/partner/user/u%201/token/t%2F2/update", reply(200, `{"id":"t/2"}`))
	c := newTestClient(t, r, func(o *Options) { o.BaseURL += "/api/" })
	u, err := c.FetchUser(context.Background(), "a/b?c")
	require.NoError(t, err)
	assert.Equal(t, "a/b?c", u.ID)
	require.NoError(t, c.UpdateToken(context.Background(), "u 1", "t/2", state.TokenFields{Name: state.Some("x")}))
}

func TestListUsersStopsOnShortPage(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", usersPath+"?take=100", reply(200, page(usersJSON(0, 100), "u99")))
	r.on("GET", usersPath+"?take=100&cursor=u99", reply(200, page(usersJSON(100, 200), "u199")))
	r.on("GET", usersPath+"?take=100&cursor=u199", reply(200, page(usersJSON(200, 250), "u249")))
	// No stub for cursor=u249: asking for the empty page would fail the test.
	c := newTestClient(t, r)
	users, err := collect(t, c.ListUsers(context.Background(), ListOptions{}))
	require.NoError(t, err)
	require.Len(t, users, 250)
	assert.Equal(t, "u0", users[0].ID)
	assert.Equal(t, "u249", users[249].ID)
	assert.Equal(t, int64(3), c.Stats().Calls[OpUserList], "ceil(250/100) calls")
}

func TestListStopsWithoutCursorAndOnEmptyPage(t *testing.T) {
	r := newRegistry(t)
	// A full page without a cursor ends the list.
	r.on("GET", usersPath+"?take=100&email=a%40acme.test", reply(200, page(usersJSON(0, 100), "")))
	// An exact multiple of the page size needs the empty page, and, since an empty
	// page is also the answer for a deleted cursor and a token cannot be fetched, the
	// page before it once more: it shows t2 still exists, so the list ended.
	r.on("GET", "/v1/partner/user/u1/token/list?take=2&order=desc", reply(200, `{"items":[{"id":"t1"},{"id":"t2"}],"cursor":"t2"}`)).n(2)
	r.on("GET", "/v1/partner/user/u1/token/list?take=2&order=desc&cursor=t2", reply(200, `{"items":[]}`))
	c := newTestClient(t, r)
	users, err := collect(t, c.ListUsers(context.Background(), ListOptions{Email: "a@acme.test"}))
	require.NoError(t, err)
	assert.Len(t, users, 100)
	tokens, err := collect(t, c.ListTokens(context.Background(), "u1", ListOptions{Take: 2, Order: "desc"}))
	require.NoError(t, err)
	assert.Len(t, tokens, 2)
}

func TestListFiltersInQuery(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", usersPath+"?take=50&order=asc&email=x%40y.test&meta.team=sales&meta.region=eu", reply(200, page(`[{"id":"u1"}]`, "u1")))
	c := newTestClient(t, r)
	users, err := collect(t, c.ListUsers(context.Background(), ListOptions{Order: "asc", Take: 50, Email: "x@y.test", Meta: map[string]string{"team": "sales", "region": "eu"}}))
	require.NoError(t, err)
	assert.Len(t, users, 1)

	_, err = collect(t, c.ListUsers(context.Background(), ListOptions{Order: "sideways"}))
	assert.ErrorContains(t, err, "order")
	_, err = collect(t, c.ListUsers(context.Background(), ListOptions{Meta: map[string]string{"a.b": "c"}}))
	assert.ErrorContains(t, err, "dots")
}

func TestListIteratorCanStopEarly(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", usersPath+"?take=100", reply(200, page(usersJSON(0, 100), "u99")))
	c := newTestClient(t, r)
	n := 0
	for _, err := range c.ListUsers(context.Background(), ListOptions{}) {
		require.NoError(t, err)
		if n++; n == 5 {
			break
		}
	}
	assert.Equal(t, 5, n)
}

func TestJSONLStream(t *testing.T) {
	r := newRegistry(t)
	stream := strings.Join([]string{
		`{"type":"item","data":{"id":"u1","name":null}}`,
		`{"type":"nop"}`,
		``,
		`{"type":"item","data":{"id":"u2","email":"b@acme.test"}}`,
	}, "\n") + "\n"
	r.on("GET", usersPath+"?order=asc", func(w http.ResponseWriter, req *http.Request) {
		assert.Equal(t, "application/jsonl", req.Header.Get("Accept"))
		reply(200, stream, "Content-Type", "application/jsonl")(w, req)
	})
	// The stream's last item still exists (a fetch, not a poll): the stream was whole.
	r.on("GET", "/v1/partner/user/u2/fetch", reply(200, `{"id":"u2"}`))
	c := newTestClient(t, r, func(o *Options) { o.JSONL = true })
	users, err := collect(t, c.ListUsers(context.Background(), ListOptions{Order: "asc", Take: 7}))
	require.NoError(t, err)
	require.Len(t, users, 2)
	assert.True(t, users[0].Name.IsNull())
	assert.True(t, users[0].Email.Absent())
	assert.Equal(t, "b@acme.test", users[1].Email.Value())
}

func TestJSONLErrorLineIsRetriedWithoutDuplicates(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", usersPath, reply(200, `{"type":"item","data":{"id":"u1"}}`+"\n"+`{"type":"item","data":{"id":"u2"}}`+"\n"+
		`{"type":"error","data":{"message":"took too long","code":"TIMEOUT"}}`+"\n"))
	r.on("GET", usersPath, reply(200, `{"type":"item","data":{"id":"u1"}}`+"\n"+`{"type":"item","data":{"id":"u2"}}`+"\n"+`{"type":"item","data":{"id":"u3"}}`+"\n"))
	r.on("GET", "/v1/partner/user/u3/fetch", reply(200, `{"id":"u3"}`))
	c := newTestClient(t, r, func(o *Options) { o.JSONL = true })
	users, err := collect(t, c.ListUsers(context.Background(), ListOptions{}))
	require.NoError(t, err)
	var ids []string
	for _, u := range users {
		ids = append(ids, u.ID)
	}
	assert.Equal(t, []string{"u1", "u2", "u3"}, ids)
	assert.Equal(t, int64(1), c.Stats().Retries)
}

func TestJSONLPersistentErrors(t *testing.T) {
	for name, body := range map[string]string{
		"error line":   `{"type":"error","data":{"message":"boom","code":"INTERNAL"}}` + "\n",
		"unknown type": `{"type":"surprise","data":{}}` + "\n",
		"not json":     "<html>\n",
		"item no id":   `{"type":"item","data":{"name":"x"}}` + "\n",
		"key case":     `{"Type":"item","Data":{"id":"u1"}}` + "\n",
		"no data":      `{"type":"item"}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t)
			r.on("GET", usersPath, reply(200, body)).n(4)
			c := newTestClient(t, r, func(o *Options) { o.JSONL = true })
			_, err := collect(t, c.ListUsers(context.Background(), ListOptions{}))
			require.Error(t, err)
			assert.True(t, IsMalformed(err), "%v", err)
			if name == "error line" {
				var ae *APIError
				require.ErrorAs(t, err, &ae)
				assert.Equal(t, 200, ae.Status)
				assert.Equal(t, "INTERNAL", ae.Code)
			}
		})
	}
}

func TestNullAndMissingStayApart(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(200, `{"id":"u1","name":null,"email":"a@acme.test","meta":{"k":"v"},"limits":{"tokens":5,"database":null}}`))
	r.on("GET", "/v1/partner/user/u1/token/list?take=100", reply(200, `{"items":[{"id":"t1","description":null}],"cursor":"t1"}`))
	c := newTestClient(t, r)
	u, err := c.FetchUser(context.Background(), "u1")
	require.NoError(t, err)
	assert.True(t, u.Name.IsNull())
	assert.True(t, u.Description.Absent(), "missing means unknown")
	assert.True(t, u.Image.Absent())
	assert.Equal(t, "a@acme.test", u.Email.Value())
	l, _ := u.Limits.Get()
	assert.Equal(t, state.Limits{"tokens": 5.0, "database": nil}, l)

	tokens, err := collect(t, c.ListTokens(context.Background(), "u1", ListOptions{}))
	require.NoError(t, err)
	require.Len(t, tokens, 1)
	assert.True(t, tokens[0].Description.IsNull())
	assert.True(t, tokens[0].Name.Absent())
}

func TestBadShape200IsAnErrorNeverEmpty(t *testing.T) {
	for name, body := range map[string]string{
		"array":         `[]`,
		"string":        `"ok"`,
		"empty":         ``,
		"no items":      `{"cursor":"x"}`,
		"null items":    `{"items":null}`,
		"items object":  `{"items":{}}`,
		"item no id":    `{"items":[{"name":"x"}]}`,
		"error body":    `{"message":"Internal error","code":"INTERNAL_SERVER_ERROR"}`,
		"truncated":     `{"items":[{"id":"u1"}`,
		"html":          `<html>gateway</html>`,
		"bad cursor":    `{"items":[],"cursor":5}`,
		"bad item type": `{"items":["u1"]}`,
		"key case":      `{"Items":[]}`,
		"unicode space": "\u00a0{\"items\":[]}",
	} {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t)
			r.on("GET", usersPath+"?take=100", reply(200, body)).n(4) // retried like a 5xx
			c := newTestClient(t, r)
			users, err := collect(t, c.ListUsers(context.Background(), ListOptions{}))
			require.Error(t, err)
			assert.Empty(t, users)
			assert.True(t, IsMalformed(err), "%v", err)
			assert.Equal(t, int64(3), c.Stats().Retries)
		})
	}
}

func TestBadShapeOnCreateIsALostAnswer(t *testing.T) {
	r := newRegistry(t)
	r.on("POST", "/v1/partner/user/create", reply(200, `{"name":"x"}`))
	r.on("POST", "/v1/partner/user/u1/token/create", reply(200, `{"id":"t1","createdAt":1}`))
	r.on("POST", "/v1/partner/user/u2/token/create", reply(200, `{"message":"slow","code":"TIMEOUT"}`))
	r.on("POST", "/v1/partner/user/u3/token/create", reply(200, `{"ID":"t1","Token":"sk-1"}`))
	c := newTestClient(t, r)
	_, err := c.CreateUser(context.Background(), state.UserFields{})
	assert.True(t, IsLost(err), "%v", err)
	assert.True(t, IsMalformed(err))
	_, err = c.CreateToken(context.Background(), "u1", state.TokenFields{})
	assert.True(t, IsLost(err), "%v", err)
	assert.ErrorContains(t, err, "no token")
	_, err = c.CreateToken(context.Background(), "u2", state.TokenFields{})
	assert.True(t, IsLost(err), "%v", err)
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "TIMEOUT", ae.Code)
	_, err = c.CreateToken(context.Background(), "u3", state.TokenFields{})
	assert.True(t, IsLost(err), "keys are matched exactly: %v", err)
}

func TestErrorCodesAreMappedAndNotRetried(t *testing.T) {
	type check func(error) bool
	cases := []struct {
		status  int
		body    string
		headers []string
		code    string
		is      check
	}{
		{400, `{"message":"bad email","code":"BAD_REQUEST"}`, nil, "BAD_REQUEST", nil},
		{401, `{"message":"no","code":"NOT_AUTHENTICATED"}`, nil, "NOT_AUTHENTICATED", IsAuth},
		{402, `{"message":"pay","code":"NO_SUBSCRIPTION"}`, nil, "NO_SUBSCRIPTION", IsAuth},
		{403, `{"message":"no","code":"NOT_AUTHORIZED"}`, nil, "NOT_AUTHORIZED", IsAuth},
		{404, `{"message":"gone","code":"NOT_FOUND"}`, nil, "NOT_FOUND", IsNotFound},
		{409, `{"message":"dup","code":"CONFLICT"}`, nil, "CONFLICT", IsConflict},
		{429, `{"message":"quota","code":"LIMITS_REACHED"}`, nil, "LIMITS_REACHED", IsQuota},
		{429, `Too Many`, []string{"X-Failure-Code", "LIMITS_REACHED", "Content-Type", "text/plain"}, "LIMITS_REACHED", IsQuota},
		{429, `{"message":"slow down","code":"TOO_MANY_REQUESTS"}`, []string{"X-Failure-Code", "LIMITS_REACHED"}, "LIMITS_REACHED", IsQuota},
		{404, `<html>not here</html>`, []string{"Content-Type", "text/html"}, "", IsNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.code+"/"+http.StatusText(tc.status), func(t *testing.T) {
			r := newRegistry(t)
			r.on("GET", "/v1/partner/user/u1/fetch", reply(tc.status, tc.body, tc.headers...)) // exactly once
			c := newTestClient(t, r)
			_, err := c.FetchUser(context.Background(), "u1")
			var ae *APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.status, ae.Status)
			assert.Equal(t, tc.code, ae.Code)
			assert.Equal(t, OpUserFetch, ae.Op)
			if tc.is != nil {
				assert.True(t, tc.is(err))
			}
			assert.False(t, IsLost(err))
			assert.Zero(t, c.Stats().Retries)
			if strings.HasPrefix(tc.body, "<html>") {
				assert.Equal(t, "<html>not here</html>", ae.Message)
			}
		})
	}
}

func TestGETRetriedOn5xx429AndNetworkErrors(t *testing.T) {
	r := newRegistry(t)
	// The hang-up comes first, on a fresh connection: on a reused one net/http
	// would itself repeat the GET, unseen by the client.
	r.on("GET", "/v1/partner/user/u1/fetch", hangUp)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(503, `{"message":"down","code":"SERVICE_UNAVAILABLE"}`))
	r.on("GET", "/v1/partner/user/u1/fetch", reply(429, `{"message":"slow down","code":"TOO_MANY_REQUESTS"}`, "Retry-After", "3"))
	r.on("GET", "/v1/partner/user/u1/fetch", reply(500, `oops`, "Retry-After", "Wed, 15 Nov 2023 00:00:00 GMT"))
	r.on("GET", "/v1/partner/user/u1/fetch", reply(200, `{"id":"u1"}`))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Hour })
	// The HTTP date is 60s after the start, so 60s less the waits before it.
	c.clock.now = time.Date(2023, 11, 14, 23, 59, 0, 0, time.UTC)

	u, err := c.FetchUser(context.Background(), "u1")
	require.NoError(t, err)
	assert.Equal(t, "u1", u.ID)
	st := c.Stats()
	assert.Equal(t, int64(5), st.Calls[OpUserFetch])
	assert.Equal(t, int64(4), st.Retries)
	assert.Equal(t, int64(1), st.Throttled)
	// Exponential backoff (jitter pinned to its maximum) for the hang-up and the 503,
	// then Retry-After in seconds and as an HTTP date.
	assert.Equal(t, []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Second, 60*time.Second - 3003*time.Millisecond}, c.clock.waits())
}

func TestRetriesAreBoundedByMaxElapsed(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(502, `{"message":"bad gateway","code":"BAD_GATEWAY"}`)).n(4)
	c := newTestClient(t, r) // 10ms: waits 1+2+4, the next 8 would pass the bound
	_, err := c.FetchUser(context.Background(), "u1")
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 502, ae.Status)
	assert.False(t, IsLost(err), "a GET changes nothing")

	// A Retry-After past the bound is not waited for.
	r2 := newRegistry(t)
	r2.on("GET", "/v1/partner/user/u1/fetch", reply(503, `{}`, "Retry-After", "3600"))
	c2 := newTestClient(t, r2)
	_, err = c2.FetchUser(context.Background(), "u1")
	require.Error(t, err)
	assert.Empty(t, c2.clock.waits())
}

func TestContextCancelStopsRetries(t *testing.T) {
	r := newRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	r.on("GET", "/v1/partner/user/u1/fetch", func(w http.ResponseWriter, req *http.Request) {
		cancel()
		reply(503, `{}`)(w, req)
	})
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Hour })
	_, err := c.FetchUser(ctx, "u1")
	assert.ErrorIs(t, err, context.Canceled)
}

func TestA429SlowsEveryRequest(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", usersPath+"?take=100", reply(429, `{"message":"slow down","code":"TOO_MANY_REQUESTS"}`, "Retry-After", "5"))
	r.on("GET", "/v1/partner/user/u1/fetch", reply(200, `{"id":"u1"}`))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Minute })
	// The list gives up at once (5s is past its own 1s bound) but leaves the pause
	// behind, which the fetch, with a minute to go, waits for.
	short := c.ReadOnly()
	short.maxRetry = time.Second
	_, err := collect(t, short.ListUsers(context.Background(), ListOptions{}))
	require.Error(t, err)
	assert.Empty(t, c.clock.waits())

	_, err = c.FetchUser(context.Background(), "u1")
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{5 * time.Second}, c.clock.waits(), "another request waited for the shared pause")
}

// A Retry-After of an hour is capped: the call that met it waits at most
// maxRetryAfter, and a pause never holds another call past its own retry deadline:
// that call is not sent and fails at once, saying why (it used to wait the hour, and
// with it every call of the run, interrupts included).
func TestRetryAfterIsCappedAndNeverHoldsOthersPastTheirDeadline(t *testing.T) {
	const hour = `{"message":"slow down","code":"TOO_MANY_REQUESTS"}`
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(429, hour, "Retry-After", "3600"))
	r.on("GET", "/v1/partner/user/u1/fetch", reply(200, `{"id":"u1"}`))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Hour })
	_, err := c.FetchUser(context.Background(), "u1")
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{maxRetryAfter}, c.clock.waits(), "an hour is heard as the cap")

	r2 := newRegistry(t)
	r2.on("GET", "/v1/partner/user/u1/fetch", reply(429, hour, "Retry-After", "3600"))
	c2 := newTestClient(t, r2, func(o *Options) { o.RetryMaxElapsed = 5 * time.Second })
	_, err = c2.FetchUser(context.Background(), "u1")
	require.Error(t, err)
	for _, op := range []func() error{
		func() error { _, err := c2.FetchUser(context.Background(), "u2"); return err },
		func() error { return c2.DeleteUser(context.Background(), "u2") },
		func() error { _, err := c2.CreateUser(context.Background(), state.UserFields{}); return err },
	} {
		err := op()
		require.Error(t, err)
		assert.ErrorContains(t, err, "not sent: the API asked every request to wait 5m0s (Retry-After), more than the 5s this call may still wait")
		var ae *APIError
		require.ErrorAs(t, err, &ae, "the 429 is wrapped")
		assert.Equal(t, 429, ae.Status)
		assert.False(t, IsLost(err), "nothing was sent: %v", err)
	}
	assert.Empty(t, c2.clock.waits(), "nobody waited for a pause they could not outlive")
	assert.Equal(t, 1, r2.requests())
}

func TestCreateLostAnswerIsNotRetried(t *testing.T) {
	r := newRegistry(t)
	r.on("POST", "/v1/partner/user/create", hangUp)
	r.on("POST", "/v1/partner/user/u1/token/create", reply(502, `{"message":"bad gateway","code":"BAD_GATEWAY"}`))
	r.on("POST", "/v1/partner/user/u2/token/create", reply(500, `{"message":"oops","code":"INTERNAL_SERVER_ERROR"}`))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Hour })

	_, err := c.CreateUser(context.Background(), state.UserFields{Email: state.Some("a@acme.test")})
	var le *LostAnswerError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, OpUserCreate, le.Op)

	_, err = c.CreateToken(context.Background(), "u1", state.TokenFields{Name: state.Some("ci")})
	require.True(t, IsLost(err), "%v", err)
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 502, ae.Status)

	_, err = c.CreateToken(context.Background(), "u2", state.TokenFields{})
	require.True(t, IsLost(err))
	assert.Equal(t, 3, r.requests(), "exactly one request per create")
	assert.Zero(t, c.Stats().Retries)
}

func TestCreateWhoseConnectionWasRefusedIsRetried(t *testing.T) {
	// The API answered once, then nothing listens: the request never left, so
	// repeating it cannot duplicate.
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(200, `{"id":"u1"}`))
	c := newTestClient(t, r)
	_, err := c.FetchUser(context.Background(), "u1")
	require.NoError(t, err)
	c.hc.CloseIdleConnections() // so the create dials, rather than meet the closing connection
	r.srv.Close()
	_, err = c.CreateUser(context.Background(), state.UserFields{})
	require.Error(t, err)
	assert.False(t, IsLost(err), "%v", err)
	assert.False(t, IsUnreachable(err), "%v", err)
	assert.Equal(t, int64(4), c.Stats().Calls[OpUserCreate])
}

func TestCreateRetriedOn429TooManyRequests(t *testing.T) {
	r := newRegistry(t)
	r.on("POST", "/v1/partner/user/create", reply(429, `{"message":"slow down","code":"TOO_MANY_REQUESTS"}`))
	r.on("POST", "/v1/partner/user/create", reply(429, ``, "X-Failure-Code", "TOO_MANY_REQUESTS", "Retry-After", "2"))
	r.on("POST", "/v1/partner/user/create", reply(200, `{"id":"u9"}`))
	r.on("POST", "/v1/partner/user/u9/token/create", reply(429, `{"message":"slow down","code":"TOO_MANY_REQUESTS"}`))
	r.on("POST", "/v1/partner/user/u9/token/create", reply(201, `{"id":"t1","token":"sk-new","createdAt":5}`))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Hour })
	id, err := c.CreateUser(context.Background(), state.UserFields{})
	require.NoError(t, err)
	assert.Equal(t, "u9", id)
	ct, err := c.CreateToken(context.Background(), id, state.TokenFields{})
	require.NoError(t, err)
	assert.Equal(t, "t1", ct.ID)
	assert.Equal(t, "sk-new", ct.Token.Reveal())
	assert.Equal(t, int64(5), ct.CreatedAt)
	assert.Equal(t, int64(3), c.Stats().Throttled)
	// Without Retry-After a 429 waits between half and all of the backoff (pinned: all).
	assert.Equal(t, []time.Duration{time.Millisecond, 2 * time.Second, time.Millisecond}, c.clock.waits())
}

func TestUpdateAndDeleteAreRetried(t *testing.T) {
	r := newRegistry(t)
	r.on("POST", "/v1/partner/user/u1/update", reply(503, `{"message":"down","code":"SERVICE_UNAVAILABLE"}`))
	r.on("POST", "/v1/partner/user/u1/update", reply(200, `{"id":"u1"}`))
	r.on("POST", "/v1/partner/user/u1/token/t1/update", hangUp)
	r.on("POST", "/v1/partner/user/u1/token/t1/update", reply(200, `{"id":"t1"}`))
	// The first delete was made but its answer lost; the repeat meets 404: done.
	r.on("POST", "/v1/partner/user/u1/token/t1/delete", hangUp)
	r.on("POST", "/v1/partner/user/u1/token/t1/delete", reply(404, `{"message":"gone","code":"NOT_FOUND"}`))
	r.on("POST", "/v1/partner/user/u2/delete", reply(404, `{"message":"gone","code":"NOT_FOUND"}`))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Hour })
	ctx := context.Background()
	require.NoError(t, c.UpdateUser(ctx, "u1", state.UserFields{Name: state.Some("A")}))
	require.NoError(t, c.UpdateToken(ctx, "u1", "t1", state.TokenFields{Name: state.Some("ci")}))
	require.NoError(t, c.DeleteToken(ctx, "u1", "t1"))
	require.NoError(t, c.DeleteUser(ctx, "u2"))
	assert.Equal(t, int64(3), c.Stats().Retries)
}

func TestUpdateThatNeverAnswersIsLost(t *testing.T) {
	r := newRegistry(t)
	r.on("POST", "/v1/partner/user/u1/update", reply(504, `{"message":"timeout","code":"GATEWAY_TIMEOUT"}`)).n(4)
	r.on("POST", "/v1/partner/user/u1/delete", reply(400, `{"message":"no","code":"BAD_REQUEST"}`))
	c := newTestClient(t, r)
	err := c.UpdateUser(context.Background(), "u1", state.UserFields{})
	assert.True(t, IsLost(err), "%v", err)
	err = c.DeleteUser(context.Background(), "u1")
	assert.False(t, IsLost(err))
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 400, ae.Status)
}

func TestDryRunSendsNoWrite(t *testing.T) {
	r := newRegistry(t) // no stub for any POST: one would fail the test
	r.on("GET", "/v1/partner/user/u1/fetch", reply(200, `{"id":"u1"}`))
	c := newTestClient(t, r, func(o *Options) { o.DryRun = true })
	ctx := context.Background()
	_, err := c.FetchUser(ctx, "u1")
	require.NoError(t, err, "reads still work")
	_, err = c.CreateUser(ctx, state.UserFields{})
	assert.ErrorIs(t, err, ErrDryRun)
	assert.ErrorIs(t, c.UpdateUser(ctx, "u1", state.UserFields{}), ErrDryRun)
	assert.ErrorIs(t, c.DeleteUser(ctx, "u1"), ErrDryRun)
	_, err = c.CreateToken(ctx, "u1", state.TokenFields{})
	assert.ErrorIs(t, err, ErrDryRun)
	assert.ErrorIs(t, c.UpdateToken(ctx, "u1", "t1", state.TokenFields{}), ErrDryRun)
	assert.ErrorIs(t, c.DeleteToken(ctx, "u1", "t1"), ErrDryRun)
	assert.Equal(t, 1, r.requests())
	assert.Equal(t, int64(1), c.Stats().Total())
}

func TestTokenNeverInErrorsOrLogs(t *testing.T) {
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			reply(status, `{"message":"bad credentials `+req.Header.Get("Authorization")+`","code":"`+testToken+`"}`)(w, req)
		}
	}
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", echo(401))
	r.on("GET", "/v1/partner/user/u2/fetch", echo(503)).n(4)
	r.on("GET", "/v1/partner/user/u3/fetch", reply(200, `garbage `+testToken)).n(4)
	r.on("POST", "/v1/partner/user/create", echo(500))
	r.on("POST", "/v1/partner/user/u4/update", hangUp).n(4)
	r.on("GET", usersPath, reply(200, `{"type":"error","data":{"message":"`+testToken+`","code":"X"}}`+"\n")).n(4)
	ctx := context.Background()
	c := newTestClient(t, r)
	cj := newTestClient(t, r, func(o *Options) { o.JSONL = true })

	var errs []error
	_, err := c.FetchUser(ctx, "u1")
	assert.True(t, IsAuth(err), "the kind survives redaction")
	errs = append(errs, err)
	_, err = c.FetchUser(ctx, "u2")
	errs = append(errs, err)
	_, err = c.FetchUser(ctx, "u3")
	assert.True(t, IsMalformed(err))
	errs = append(errs, err)
	_, err = c.CreateUser(ctx, state.UserFields{})
	assert.True(t, IsLost(err), "the kind survives redaction")
	errs = append(errs, err)
	err = c.UpdateUser(ctx, "u4", state.UserFields{})
	assert.True(t, IsLost(err))
	errs = append(errs, err)
	_, err = collect(t, cj.ListUsers(ctx, ListOptions{}))
	errs = append(errs, err)
	// A token in a path or URL (a mistake upstream) is scrubbed too.
	r.on("GET", "/v1/partner/user/"+testToken+"/fetch", hangUp).n(4)
	_, err = c.FetchUser(ctx, testToken)
	errs = append(errs, err)

	for i, err := range errs {
		require.Error(t, err, i)
		assert.NotContains(t, err.Error(), testToken, i)
		assert.NotContains(t, err.Error(), "0123456789abcdef", i)
		for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
			assert.NotContains(t, e.Error(), testToken, i)
		}
	}
	assert.NotEmpty(t, c.logs.String())
	assert.NotContains(t, c.logs.String(), testToken)
	assert.NotContains(t, cj.logs.String(), testToken)
}

// cancellingClock ends the call's context when the retry loop starts to wait.
type cancellingClock struct {
	fakeClock
	cancel context.CancelFunc
}

func (c *cancellingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.cancel()
	return c.fakeClock.Sleep(ctx, d)
}

func TestCancelledWhileWaitingToRetry(t *testing.T) {
	r := newRegistry(t)
	r.on("POST", "/v1/partner/user/u1/update", reply(503, `{"message":"down","code":"SERVICE_UNAVAILABLE"}`))
	r.on("GET", "/v1/partner/user/u1/fetch", reply(503, `{"message":"down","code":"SERVICE_UNAVAILABLE"}`))
	c := newTestClient(t, r)

	ctx, cancel := context.WithCancel(context.Background())
	c.Client.clock = &cancellingClock{cancel: cancel}
	err := c.UpdateUser(ctx, "u1", state.UserFields{})
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, IsLost(err), "the 503 may have been acted on: %v", err)

	ctx, cancel = context.WithCancel(context.Background())
	c.Client.clock = &cancellingClock{cancel: cancel}
	_, err = c.FetchUser(ctx, "u1")
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, IsLost(err))
	assert.ErrorContains(t, err, "503")
}

func TestTimeoutPerRequest(t *testing.T) {
	// The handlers never answer; they return when the client gives up on them.
	stall := func(w http.ResponseWriter, req *http.Request) { <-req.Context().Done() }
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", stall).n(4)
	r.on("POST", "/v1/partner/user/create", stall)
	c := newTestClient(t, r, func(o *Options) { o.Timeout = 20 * time.Millisecond })

	_, err := c.FetchUser(context.Background(), "u1")
	assert.ErrorContains(t, err, "no answer within 20ms")
	_, err = c.CreateUser(context.Background(), state.UserFields{})
	assert.True(t, IsLost(err), "%v", err)
}

func TestRateLimitedClientStillWorks(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(200, `{"id":"u1"}`)).n(3)
	c := newTestClient(t, r, func(o *Options) { o.RPS = 1000 })
	for range 3 {
		_, err := c.FetchUser(context.Background(), "u1")
		require.NoError(t, err)
	}
}

func TestEmptyIDsAreRefusedLocally(t *testing.T) {
	r := newRegistry(t)
	c := newTestClient(t, r)
	ctx := context.Background()
	_, err := c.FetchUser(ctx, "")
	assert.Error(t, err)
	assert.Error(t, c.UpdateUser(ctx, "", state.UserFields{}))
	assert.Error(t, c.DeleteUser(ctx, ""))
	_, err = c.CreateToken(ctx, "", state.TokenFields{})
	assert.Error(t, err)
	assert.Error(t, c.UpdateToken(ctx, "u1", "", state.TokenFields{}))
	assert.Error(t, c.DeleteToken(ctx, "", "t1"))
	_, err = collect(t, c.ListTokens(ctx, "", ListOptions{}))
	assert.Error(t, err)
	assert.Zero(t, r.requests())
}

func TestReadOnlySharesPaceAndCounters(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", "/v1/partner/user/u1/fetch", reply(429, `{"message":"slow down","code":"TOO_MANY_REQUESTS"}`, "Retry-After", "5"))
	r.on("GET", "/v1/partner/user/u2/fetch", reply(200, `{"id":"u2"}`))
	c := newTestClient(t, r, func(o *Options) { o.RetryMaxElapsed = time.Minute })
	ro := c.ReadOnly()
	ro.maxRetry = time.Second // gives up on the 429 at once
	_, err := ro.FetchUser(context.Background(), "u1")
	require.Error(t, err)
	_, err = ro.CreateUser(context.Background(), state.UserFields{})
	assert.ErrorIs(t, err, ErrDryRun)
	assert.False(t, c.dryRun, "the original still writes")

	_, err = c.FetchUser(context.Background(), "u2")
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{5 * time.Second}, c.clock.waits(), "the writer waited for the reader's 429")
	assert.Equal(t, int64(2), c.Stats().Calls[OpUserFetch])
	assert.Equal(t, c.Stats(), ro.Stats())
}
