package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
	"github.com/stretchr/testify/require"
)

const testToken = "sk-test-bearer-secret"

// fakeClock is a clock that moves one millisecond per reading, so every object gets a
// distinct, predictable createdAt.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Add(1)) }

// harness is an emulator behind a real HTTP server.
type harness struct {
	t   *testing.T
	e   *Emulator
	srv *httptest.Server
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	if opts.Token == "" {
		opts.Token = testToken
	}
	if opts.Now == nil {
		opts.Now = newFakeClock().now
	}
	e, err := New(opts)
	require.NoError(t, err)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &harness{t: t, e: e, srv: srv}
}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// do sends a request with the test bearer token; body "" sends none.
func (h *harness) do(method, path, body string, hdr ...string) response {
	h.t.Helper()
	r, err := h.try(method, path, body, hdr...)
	require.NoError(h.t, err)
	return r
}

func (h *harness) try(method, path, body string, hdr ...string) (response, error) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	require.NoError(h.t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// ok sends a request that must succeed and returns its decoded body.
func (h *harness) ok(method, path, body string) map[string]any {
	h.t.Helper()
	r := h.do(method, path, body)
	require.Equal(h.t, http.StatusOK, r.status, "%s %s: %s", method, path, r.body)
	return r.json(h.t)
}

// fail sends a request that must fail with status and code.
func (h *harness) fail(status int, code, method, path, body string) response {
	h.t.Helper()
	r := h.do(method, path, body)
	require.Equal(h.t, status, r.status, "%s %s: %s", method, path, r.body)
	require.Equal(h.t, "application/json", r.header.Get("Content-Type"))
	m := r.json(h.t)
	require.Equal(h.t, code, m["code"], "body: %s", r.body)
	require.NotEmpty(h.t, m["message"])
	require.NotContains(h.t, string(r.body), testToken)
	return r
}

func (h *harness) createUser(body string) string {
	h.t.Helper()
	m := h.ok("POST", "/v1/partner/user/create", body)
	require.Len(h.t, m, 1, "create answers {id}")
	return m["id"].(string)
}

func (h *harness) createToken(userID, body string) map[string]any {
	h.t.Helper()
	return h.ok("POST", "/v1/partner/user/"+userID+"/token/create", body)
}

// ids returns the ids of a list answer's items.
func ids(t *testing.T, m map[string]any) []string {
	t.Helper()
	items, ok := m["items"].([]any)
	require.True(t, ok, "items must be an array: %v", m)
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.(map[string]any)["id"].(string)
	}
	return out
}

func stateUser(email string, createdAt int64) state.User {
	return state.User{Email: state.Some(email), CreatedAt: createdAt}
}

func stateToken(name string, createdAt int64) state.Token {
	return state.Token{Name: state.Some(name), CreatedAt: createdAt}
}
