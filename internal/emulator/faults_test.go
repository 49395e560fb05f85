package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLostAnswerMakesTheChangeAndDropsTheConnection(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{Seed: 1, RateLost: 1}})
	_, err := h.try("POST", "/v1/partner/user/create", `{"email":"a@acme.test"}`)
	require.Error(t, err)
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET), "got %v", err)
	users := h.e.Users()
	require.Len(t, users, 1, "the change was made")
	assert.Equal(t, "a@acme.test", users[0].Email.Value())

	// A POST that fails is answered: nothing was changed, so nothing is lost.
	h.fail(http.StatusConflict, "CONFLICT", "POST", "/v1/partner/user/create", `{"email":"A@acme.test"}`)
	// GETs are never lost.
	assert.Len(t, ids(t, h.ok("GET", "/v1/partner/user/list", "")), 1)

	_, err = h.try("POST", "/v1/partner/user/"+users[0].ID+"/token/create", `{"name":"ci"}`)
	require.Error(t, err)
	assert.Len(t, h.e.Tokens(users[0].ID), 1, "the token exists though its secret never arrived")

	assert.Equal(t, int64(2), h.e.FaultCounts()["lost"])
	assert.Equal(t, int64(2), h.e.Counts()["user.create"])
	assert.Equal(t, int64(1), h.e.Counts()["token.create"])
}

func TestTooManyRequests(t *testing.T) {
	for _, c := range []struct {
		retryAfter time.Duration
		header     string
	}{{0, ""}, {time.Second, "1"}, {1500 * time.Millisecond, "2"}, {time.Millisecond, "1"}} {
		t.Run(fmt.Sprint(c.retryAfter), func(t *testing.T) {
			h := newHarness(t, Options{Faults: Faults{Seed: 2, Rate429: 1, RetryAfter: c.retryAfter}})
			for _, req := range [][3]string{{"POST", "/v1/partner/user/create", `{}`}, {"GET", "/v1/partner/user/list", ""}} {
				r := h.fail(http.StatusTooManyRequests, "TOO_MANY_REQUESTS", req[0], req[1], req[2])
				assert.Equal(t, c.header, r.header.Get("Retry-After"))
				_, has := r.header["Retry-After"]
				assert.Equal(t, c.header != "", has)
				assert.Empty(t, r.header.Get("X-Failure-Code"))
			}
			assert.Empty(t, h.e.Users(), "a 429 does not act")
			assert.Equal(t, int64(2), h.e.FaultCounts()["429"])
		})
	}
}

func TestUserQuota(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{UserQuota: 2}})
	a := h.createUser(`{"email":"a@acme.test"}`)
	h.createUser(`{"email":"b@acme.test"}`)
	r := h.fail(http.StatusTooManyRequests, "LIMITS_REACHED", "POST", "/v1/partner/user/create", `{"email":"c@acme.test"}`)
	assert.Equal(t, "LIMITS_REACHED", r.header.Get("X-Failure-Code"))
	assert.Empty(t, r.header.Get("Retry-After"))
	assert.Len(t, h.e.Users(), 2)
	h.ok("POST", "/v1/partner/user/"+a+"/update", `{"name":"updates are not creates"}`)
	h.ok("POST", "/v1/partner/user/"+a+"/delete", `{}`)
	h.createUser(`{"email":"c@acme.test"}`)
	assert.Equal(t, map[string]int64{"5xx": 0, "429": 0, "lost": 0, "bad_body": 0, "quota": 1, "writer_delete": 0, "poll_limit": 0}, h.e.FaultCounts())
	assert.Equal(t, int64(4), h.e.Counts()["user.create"])
}

func TestServerErrorsDoNotAct(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{Seed: 3, Rate5xx: 1}})
	codes := map[int]string{500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}
	seen := map[int]bool{}
	for range 40 {
		r := h.do("POST", "/v1/partner/user/create", `{}`)
		want, ok := codes[r.status]
		require.True(t, ok, "status %d", r.status)
		assert.Equal(t, want, r.json(t)["code"])
		seen[r.status] = true
	}
	assert.Len(t, seen, 4, "every 5xx status appears")
	assert.Empty(t, h.e.Users())
	assert.Equal(t, int64(40), h.e.FaultCounts()["5xx"])
	assert.Equal(t, int64(40), h.e.Counts()["user.create"])
}

func TestBadBodyAfter200(t *testing.T) {
	h := newHarness(t, Options{})
	uid := h.createUser(`{}`)
	h.e.SetFaults(Faults{RateBadBody: 1})
	for _, p := range []string{"/v1/partner/user/list", "/v1/partner/user/" + uid + "/fetch", "/v1/partner/user/" + uid + "/token/list"} {
		r := h.do("GET", p, "")
		require.Equal(t, http.StatusOK, r.status, "the trap is a 200")
		assert.JSONEq(t, `{"type":"error","data":{"message":"injected error after the answer started","code":"INTERNAL_SERVER_ERROR"}}`, string(r.body))
	}
	r := h.do("GET", "/v1/partner/user/list", "", "Accept", "application/jsonl")
	require.Equal(t, http.StatusOK, r.status)
	types, items := readJSONL(t, r.body)
	assert.Equal(t, []string{"nop", "error"}, types)
	assert.Empty(t, items)
	h.createUser(`{}`) // POSTs are not affected
	assert.Equal(t, int64(4), h.e.FaultCounts()["bad_body"])
}

// TestFaultsRepeatWithTheSeed runs the same calls against two emulators with the same
// seed, and once more after SetFaults reseeds: the faults must be the same each time.
func TestFaultsRepeatWithTheSeed(t *testing.T) {
	faults := Faults{Seed: 42, Rate5xx: 0.2, Rate429: 0.2, RateBadBody: 0.2, RateLost: 0.2}
	run := func(h *harness) []int {
		var out []int
		for i := range 60 {
			if i%2 == 0 {
				out = append(out, h.do("GET", "/v1/partner/user/list", "").status)
				continue
			}
			r, err := h.try("POST", "/v1/partner/user/create", `{}`)
			if err != nil {
				out = append(out, -1) // lost
				continue
			}
			out = append(out, r.status)
		}
		return out
	}
	h1 := newHarness(t, Options{Faults: faults})
	h2 := newHarness(t, Options{Faults: faults})
	first := run(h1)
	assert.Equal(t, first, run(h2))
	h1.e.SetFaults(faults)
	h1.e.ResetCounts()
	assert.Equal(t, first, run(h1))

	// Counters are exact: every call counted once, every fault by its kind.
	fc := h1.e.FaultCounts()
	var lost, errs int64
	for _, s := range first {
		switch {
		case s == -1:
			lost++
		case s >= 429:
			errs++
		}
	}
	assert.Equal(t, lost, fc["lost"])
	assert.Equal(t, errs, fc["5xx"]+fc["429"])
	assert.Positive(t, fc["bad_body"])
	assert.Equal(t, map[string]int64{"user.list": 30, "user.create": 30, "user.fetch": 0, "user.update": 0, "user.delete": 0,
		"token.list": 0, "token.create": 0, "token.update": 0, "token.delete": 0}, h1.e.Counts())

	h3 := newHarness(t, Options{Faults: Faults{Seed: 43, Rate5xx: 0.2, Rate429: 0.2, RateBadBody: 0.2, RateLost: 0.2}})
	assert.NotEqual(t, first, run(h3), "another seed gives other faults")
}

// TestLatencyRespectsTheRequestContext would hang for an hour if the injected delay
// ignored the context; a cancelled request must also not act.
func TestLatencyRespectsTheRequestContext(t *testing.T) {
	e, err := New(Options{Token: testToken, Faults: Faults{Latency: time.Hour}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/partner/user/create", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	e.ServeHTTP(httptest.NewRecorder(), req)
	assert.Empty(t, e.Users())
	assert.Equal(t, int64(1), e.Counts()["user.create"])
}

func TestSmallLatencyStillAnswers(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{Latency: time.Millisecond}})
	h.createUser(`{}`)
	assert.Len(t, ids(t, h.ok("GET", "/v1/partner/user/list", "")), 1)
}

func TestPickFaultPartitionsTheRoll(t *testing.T) {
	f := Faults{Rate5xx: 0.1, Rate429: 0.2, RateLost: 0.3, RateBadBody: 0.4}
	for _, c := range []struct {
		roll float64
		post bool
		want string
	}{
		{0.05, true, "5xx"}, {0.05, false, "5xx"}, {0.15, true, "429"}, {0.25, false, "429"},
		{0.35, true, "lost"}, {0.35, false, "bad_body"}, {0.65, true, ""}, {0.65, false, "bad_body"}, {0.71, false, ""},
	} {
		assert.Equal(t, c.want, pickFault(f, c.roll, c.post), "%v %v", c.roll, c.post)
	}
	assert.Equal(t, "", pickFault(Faults{}, 0, true), "no rates, no faults")
}

// TestConcurrentWriterDeletesTheCursor: after serving a page the writer deletes its
// last item, and the next page from that cursor is empty, as on the platform.
func TestConcurrentWriterDeletesTheCursor(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{DeleteEvery: 1}})
	var all []string
	for i := range 7 {
		all = append(all, h.createUser(fmt.Sprintf(`{"email":"u%d@acme.test"}`, i)))
	}
	p := h.ok("GET", "/v1/partner/user/list?order=asc&take=3", "")
	assert.Equal(t, all[:3], ids(t, p))
	assert.Equal(t, []string{all[2]}, h.e.WriterDeletes(), "the page's last item, its cursor")
	h.fail(http.StatusNotFound, "NOT_FOUND", "GET", "/v1/partner/user/"+all[2]+"/fetch", "")
	assert.Empty(t, ids(t, h.ok("GET", "/v1/partner/user/list?order=asc&take=3&cursor="+all[2], "")), "the trap: a deleted cursor ends the listing")
	assert.Equal(t, int64(1), h.e.FaultCounts()["writer_delete"], "an empty page has no item to delete")
	assert.Len(t, h.e.Users(), 6)
}

// TestStreamsPageInternallyAndMeetTheTrap: a JSONL stream reads the list in pages of
// StreamPageSize; the writer deleting the last item of one ends the stream there.
func TestStreamsPageInternallyAndMeetTheTrap(t *testing.T) {
	h := newHarness(t, Options{StreamPageSize: 3})
	var all []string
	for i := range 8 {
		all = append(all, h.createUser(fmt.Sprintf(`{"email":"u%d@acme.test"}`, i)))
	}
	stream := func(query string) []string {
		r := h.do("GET", "/v1/partner/user/list?order=asc"+query, "", "Accept", "application/jsonl")
		require.Equal(t, http.StatusOK, r.status)
		_, got := readJSONL(t, r.body)
		return got
	}
	assert.Equal(t, all, stream(""), "without a writer the stream is whole, across its internal pages")
	assert.Equal(t, all[3:], stream("&cursor="+all[2]), "a stream starts after its cursor")

	h.e.SetFaults(Faults{DeleteEvery: 2, DeleteMax: 1})
	assert.Equal(t, all[:6], stream(""), "the 2nd internal page's last item was deleted: the stream ends there")
	assert.Equal(t, []string{all[5]}, h.e.WriterDeletes())
	assert.Empty(t, stream("&cursor="+all[5]), "a stream from a deleted cursor is empty")
	assert.Equal(t, append(all[:5:5], all[6:]...), stream(""), "DeleteMax stops the writer")
}

// TestConcurrentWriterRateIsSeededAndCoversTokenLists: DeleteRate also deletes from
// token lists, and the same seed deletes the same items.
func TestConcurrentWriterRateIsSeededAndCoversTokenLists(t *testing.T) {
	deleted := func() []int {
		h := newHarness(t, Options{})
		uid := h.createUser(`{}`)
		var made []string
		for i := range 6 {
			made = append(made, h.createToken(uid, fmt.Sprintf(`{"name":"t%d"}`, i))["id"].(string))
		}
		h.e.SetFaults(Faults{Seed: 9, DeleteRate: 0.5})
		var got []string
		for range 6 {
			p := h.ok("GET", "/v1/partner/user/"+uid+"/token/list?order=asc&take=1", "")
			got = append(got, ids(t, p)...)
		}
		gone := h.e.WriterDeletes()
		require.NotEmpty(t, gone)
		assert.Len(t, h.e.Tokens(uid), 6-len(gone))
		var at []int
		for _, id := range gone {
			assert.Contains(t, got, id, "only a served page's last item is deleted")
			at = append(at, slices.Index(made, id))
		}
		return at
	}
	assert.Equal(t, deleted(), deleted())
}

// AnswerDelay acts first and answers later: a client gone in between (here, before it
// sent the request at all) is never answered, yet the change is made.
func TestAnswerDelayActsBeforeAnswering(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{AnswerDelay: time.Hour}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/partner/user/create", strings.NewReader(`{"email":"a@acme.test"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.e.ServeHTTP(rec, req) // returns at once: the client is gone
	assert.Empty(t, rec.Body.String(), "no answer")
	require.Len(t, h.e.Users(), 1, "the change was made")

	// Reads and writes that change nothing are answered at once.
	req = httptest.NewRequestWithContext(ctx, "POST", "/v1/partner/user/create", strings.NewReader(`{"email":"a@acme.test"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec = httptest.NewRecorder()
	h.e.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusConflict, rec.Code)
}
