package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// fuzzAPI answers every request with the same 200 and the body under test. One
// server serves all the inputs of a fuzz target: a fuzz worker runs them one at a time.
type fuzzAPI struct {
	srv   *httptest.Server
	mu    sync.Mutex
	body  []byte
	calls int
}

func newFuzzAPI(f *testing.F) *fuzzAPI {
	a := &fuzzAPI{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		body := a.body
		a.calls++
		a.mu.Unlock()
		if id, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/partner/user/"), "/fetch"); ok {
			// The check that a streamed list's last item still exists: it does.
			b, _ := json.Marshal(map[string]string{"id": id})
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	f.Cleanup(a.srv.Close)
	return a
}

// serve sets the body of the next answers and returns a client of the server whose
// retries cost no time: a fake clock, a 1µs base and 8µs in all make 4 attempts.
func (a *fuzzAPI) serve(t *testing.T, body []byte, jsonl bool) *Client {
	a.mu.Lock()
	a.body, a.calls = body, 0
	a.mu.Unlock()
	c, err := New(Options{BaseURL: a.srv.URL, Token: state.Secret(testToken), HTTPClient: a.srv.Client(), Paths: PathsPartner,
		RetryBase: time.Microsecond, RetryMaxElapsed: 8 * time.Microsecond, Timeout: 10 * time.Second, JSONL: jsonl})
	if err != nil {
		t.Fatal(err)
	}
	c.clock = &fakeClock{now: time.Unix(1_700_000_000, 0)}
	c.jitter = func(d time.Duration) time.Duration { return d }
	return c
}

func (a *fuzzAPI) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// fuzzContext bounds one input, so that a hang fails the input instead of stalling
// the fuzzer.
func fuzzContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func failIfHung(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the call hung: %v", err)
	}
}

// jsonObject decodes b as exactly one JSON object, keys as written.
func jsonObject(b []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func isArray(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '[' }

// isPage reports whether b could be a page at all: an object with an items array.
func isPage(b []byte) bool {
	m, ok := jsonObject(b)
	return ok && isArray(m["items"])
}

// isStream reports whether b could be a whole JSONL list: every line that is not
// blank is a nop or an item event (an error event ends the list with an error).
func isStream(b []byte) bool {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.Trim(line, " \t\r")) == 0 {
			continue
		}
		ev, ok := jsonObject(line)
		if !ok {
			return false
		}
		var typ string
		if json.Unmarshal(ev["type"], &typ) != nil {
			return false
		}
		switch typ {
		case "nop":
		case "item":
			if _, ok := jsonObject(ev["data"]); !ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

var fuzzListSeeds = []string{
	`{"items":[]}`,
	page(usersJSON(0, 3), "u2"),
	page(usersJSON(0, 100), "u99"),
	`{"items":[{"id":"u1","email":null,"meta":{"k":1},"limits":{"tokens":5,"database":null}}],"cursor":"u1"}`,
	`{"items":[{"id":"t1","name":"ci","description":null}]}`,
	`{"message":"slow","code":"TIMEOUT"}`,
	`{"items":null}`,
	`{"items":[{"id":""}]}`,
	`{"items":[],"cursor":5}`,
	"{\"items\":[]}\n{}",
	`<html>bad gateway</html>`,
	``,
}

// FuzzListPage feeds arbitrary bytes as the body of a 200 answer to a list call.
// The client must not panic or hang, and a body that is not an object with an items
// array must end the iteration with an error, never with an empty success.
func FuzzListPage(f *testing.F) {
	for _, s := range fuzzListSeeds {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`{"items":[{"id":"t1"}]}`), true)
	api := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte, tokens bool) {
		c := api.serve(t, body, false)
		ids, err := listIDs(fuzzContext(t), c, tokens)
		failIfHung(t, err)
		checkListed(t, ids, err, isPage(body))
	})
}

// FuzzJSONL is FuzzListPage for a streamed list (Accept: application/jsonl).
func FuzzJSONL(f *testing.F) {
	for _, s := range []string{
		"{\"type\":\"nop\"}\n{\"type\":\"item\",\"data\":{\"id\":\"u1\",\"name\":null}}\n\n{\"type\":\"item\",\"data\":{\"id\":\"u2\"}}\n",
		"{\"type\":\"item\",\"data\":{\"id\":\"u1\"}}\n{\"type\":\"error\",\"data\":{\"message\":\"boom\",\"code\":\"X\"}}\n",
		"{\"type\":\"item\",\"data\":{\"id\":\"u1\"}}\r\n{\"type\":\"item\",\"data\":{\"id\":\"u1\"}}",
		"{\"type\":\"item\",\"data\":{\"name\":\"x\"}}\n",
		"{\"type\":\"surprise\"}\n",
		"{\"items\":[]}\n",
		"{\"type\":\"item\",\"data\":null}\n",
		"",
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("{\"type\":\"item\",\"data\":{\"id\":\"t1\"}}\n"), true)
	api := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte, tokens bool) {
		c := api.serve(t, body, true)
		ids, err := listIDs(fuzzContext(t), c, tokens)
		failIfHung(t, err)
		// Token lists are pages even in JSONL mode.
		valid := isStream(body)
		if tokens {
			valid = isPage(body)
		}
		checkListed(t, ids, err, valid)
	})
}

func checkListed(t *testing.T, ids []string, err error, valid bool) {
	t.Helper()
	if err == nil && !valid {
		t.Fatalf("a body that is not a list gave %d items and no error", len(ids))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" {
			t.Fatal("an item without an id was yielded")
		}
		if seen[id] {
			t.Fatalf("item %q was yielded twice", id)
		}
		seen[id] = true
	}
}

// FuzzCreateAnswer feeds arbitrary bytes as the body of a 200 answer to a user or
// token create. A create is sent once, whatever the answer; it succeeds only with an
// object that has an id (and, for a token, the secret).
func FuzzCreateAnswer(f *testing.F) {
	for _, s := range []string{
		`{"id":"u1"}`,
		`{"id":"t1","token":"sk-0123","createdAt":1700000000000}`,
		`{"id":"t1","createdAt":1}`,
		`{"id":""}`,
		`{"id":5}`,
		`{"message":"slow","code":"TIMEOUT"}`,
		`{"id":"u1"} {}`,
		`null`,
		``,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	api := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte, token bool) {
		c := api.serve(t, body, false)
		ctx := fuzzContext(t)
		m, isObj := jsonObject(body)
		var id string
		if token {
			ct, err := c.CreateToken(ctx, "u1", state.TokenFields{Name: state.Some("ci")})
			failIfHung(t, err)
			if err == nil {
				var secret string
				if !isObj || json.Unmarshal(m["token"], &secret) != nil || secret == "" {
					t.Fatalf("token create accepted %q without a secret", body)
				}
				if ct.Token.Reveal() != secret {
					t.Fatalf("the secret is %q, the answer says %q", ct.Token.Reveal(), secret)
				}
			}
			id = ct.ID
			checkCreated(t, api, body, m, isObj, id, err)
		} else {
			uid, err := c.CreateUser(ctx, state.UserFields{Email: state.Some("a@x.test")})
			failIfHung(t, err)
			checkCreated(t, api, body, m, isObj, uid, err)
		}
	})
}

func checkCreated(t *testing.T, api *fuzzAPI, body []byte, m map[string]json.RawMessage, isObj bool, id string, err error) {
	t.Helper()
	if n := api.requests(); n != 1 {
		t.Fatalf("the create was sent %d times", n)
	}
	if err != nil {
		if id != "" {
			t.Fatalf("an id %q came with the error %v", id, err)
		}
		if !IsLost(err) {
			t.Fatalf("a create answered 200 may have been made, but the error does not say so: %v", err)
		}
		return
	}
	var want string
	if !isObj || json.Unmarshal(m["id"], &want) != nil || want == "" {
		t.Fatalf("create accepted %q, which has no id", body)
	}
	if id != want {
		t.Fatalf("create returned id %q, the answer says %q", id, want)
	}
}

// listIDs lists users (or the tokens of user u1) to the end and returns the IDs
// yielded and the last error met.
func listIDs(ctx context.Context, c *Client, tokens bool) (ids []string, err error) {
	if tokens {
		for tk, e := range c.ListTokens(ctx, "u1", ListOptions{}) {
			if err = e; e == nil {
				ids = append(ids, tk.ID)
			}
		}
		return ids, err
	}
	for u, e := range c.ListUsers(ctx, ListOptions{}) {
		if err = e; e == nil {
			ids = append(ids, u.ID)
		}
	}
	return ids, err
}
