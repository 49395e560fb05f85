package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// testToken is the bearer secret of every test client; no error or log may show it.
const testToken = "sk-test-0123456789abcdef-secret"

// registry is an in-process Partner API that answers only the requests a test
// registered (method, escaped path and exact query) and fails the test on any other,
// in the manner of gh's httpmock. At cleanup it checks every stub was used up.
type registry struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	stubs  []*stub
	seen   []*http.Request
	bodies [][]byte
}

type stub struct {
	method string
	path   string
	query  url.Values
	reply  http.HandlerFunc
	times  int // exact number of calls expected
	calls  int
}

func newRegistry(t *testing.T) *registry {
	t.Helper()
	r := &registry{t: t}
	r.srv = httptest.NewServer(r)
	t.Cleanup(func() {
		r.srv.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.stubs {
			if s.calls != s.times {
				t.Errorf("stub %s %s?%s: called %d times, want %d", s.method, s.path, s.query.Encode(), s.calls, s.times)
			}
		}
	})
	return r
}

// on registers a stub for one request; pathQuery is an escaped path with an optional
// query, e.g. "/v1/partner/user/list?take=100".
func (r *registry) on(method, pathQuery string, reply http.HandlerFunc) *stub {
	u, err := url.Parse(pathQuery)
	require.NoError(r.t, err)
	s := &stub{method: method, path: u.EscapedPath(), query: u.Query(), reply: reply, times: 1}
	r.mu.Lock()
	r.stubs = append(r.stubs, s)
	r.mu.Unlock()
	return s
}

func (s *stub) n(times int) *stub {
	s.times = times
	return s
}

func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.seen = append(r.seen, req)
	r.bodies = append(r.bodies, body)
	var match *stub
	for _, s := range r.stubs {
		if s.method == req.Method && s.path == req.URL.EscapedPath() && reflect.DeepEqual(s.query, req.URL.Query()) &&
			s.calls < s.times {
			match = s
			break
		}
	}
	if match != nil {
		match.calls++
	}
	r.mu.Unlock()
	if match == nil {
		r.t.Errorf("unexpected request: %s %s", req.Method, req.URL.RequestURI())
		http.Error(w, `{"message":"unexpected request","code":"TEST"}`, http.StatusTeapot)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	match.reply(w, req)
}

func (r *registry) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// reply answers with a status, a body and header pairs.
func reply(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// hangUp drops the connection without an answer, like a lost answer.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	panic(http.ErrAbortHandler)
}

// fakeClock records the waits of the retry loop and advances instead of sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fakeClock) waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

type testClient struct {
	*Client
	clock *fakeClock
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestClient returns a client of r, on the partner path family, with a fake clock and jitter that always takes
// the whole backoff, so retry counts are exact: with RetryBase 1ms and
// RetryMaxElapsed 10ms a call is sent 4 times (waits 1, 2, 4 ms; 8 more would pass 10).
func newTestClient(t *testing.T, r *registry, edit ...func(*Options)) testClient {
	t.Helper()
	logs := &syncBuffer{}
	o := Options{
		BaseURL: r.srv.URL,
		Token:   state.Secret(testToken),
		Paths:   PathsPartner, // the auto mode has its own tests

		RetryBase:       time.Millisecond,
		RetryMaxElapsed: 10 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, e := range edit {
		e(&o)
	}
	c, err := New(o)
	require.NoError(t, err)
	fc := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	c.clock, c.polls.clock = fc, fc
	c.jitter = func(d time.Duration) time.Duration { return d }
	return testClient{Client: c, clock: fc, logs: logs}
}

// usersJSON renders users u<from>..u<to-1> as a JSON array.
func usersJSON(from, to int) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := from; i < to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"u%d","email":"u%d@acme.test","createdAt":%d}`, i, i, i)
	}
	b.WriteByte(']')
	return b.String()
}

func page(items, cursor string) string {
	if cursor == "" {
		return fmt.Sprintf(`{"items":%s}`, items)
	}
	return fmt.Sprintf(`{"items":%s,"cursor":%q}`, items, cursor)
}
