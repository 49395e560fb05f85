package emulator

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Faults say which failures the emulator injects. Rates are fractions of requests in
// [0, 1]; the 5xx, 429, lost and bad-body rates share one random draw per request, so
// their sum should not exceed 1.
type Faults struct {
	Seed        int64         // seeds the fault RNG so a run can be repeated
	Latency     time.Duration // added to every API request, before acting
	AnswerDelay time.Duration // of writes that changed something: the wait between acting and answering
	Rate5xx     float64       // answered 500/502/503/504 without acting
	Rate429     float64       // answered 429 TOO_MANY_REQUESTS without acting
	RetryAfter  time.Duration // > 0: 429s carry Retry-After (whole seconds, rounded up)
	RateLost    float64       // of POSTs that succeed: the change is made, then the connection is dropped
	RateBadBody float64       // of GETs: a 200 whose body is a JSON-lines error, without acting
	UserQuota   int           // > 0: a user create beyond this many users gets 429 LIMITS_REACHED
	// LateCreates is how many token creates, the first ones, the server completes only
	// LateCommit after they arrive, whether or not the client is still waiting: a
	// client that timed out meanwhile looks the token up, does not find it yet, and
	// must not report it "not created" (see LateCommitted).
	LateCreates int
	LateCommit  time.Duration
	// PollLimit is the poll limit (see admitPoll): list requests per PollWindow,
	// account-wide. 0 means DefaultPollLimit; a negative value turns it off.
	PollLimit int
	// PollWindow is the poll limit's sliding window; 0 means DefaultPollWindow.
	PollWindow time.Duration

	// The concurrent writer: someone else deleting while cbk-sync lists. After
	// serving a non-empty page (a JSON page, or one internal page of a JSONL stream) it
	// may delete that page's last item, the cursor of the next page: on the platform
	// that ends the listing early, the worst case of a concurrent delete. A user is
	// deleted with its tokens. The deleted IDs are kept (see WriterDeletes).
	DeleteRate  float64 // fraction of pages of any list (users and tokens), drawn from its own RNG seeded by Seed
	DeleteEvery int     // > 0: also after every DeleteEvery-th page of the user list (deterministic)
	DeleteMax   int     // > 0: the writer stops after this many deletes
}

// The fault kinds used by FaultCounts.
const (
	fault5xx     = "5xx"
	fault429     = "429"
	faultLost    = "lost"
	faultBadBody = "bad_body"
	faultQuota   = "quota"
	faultPoll    = "poll_limit"    // a poll refused by the poll limit (not a random fault)
	faultDelete  = "writer_delete" // a delete by the concurrent writer
)

var allFaults = []string{fault5xx, fault429, faultLost, faultBadBody, faultQuota, faultDelete, faultPoll}

// faultState is the faults in force and what drawing them has used up, under faultMu.
type faultState struct {
	faultMu sync.Mutex
	faults  Faults
	rng     *rand.Rand
	// The concurrent writer's own RNG and counters, so that it does not shift the
	// draws of the other faults.
	writerRNG     *rand.Rand
	userPages     int      // user-list pages served since SetFaults
	writerDeletes []string // IDs the writer deleted since SetFaults, in order
}

// lateState counts the late token creates (Faults.LateCreates) taken and finished.
type lateState struct {
	lateMu    sync.Mutex
	lateTaken int
	lateDoneN int
	lateCond  *sync.Cond
}

// SetFaults replaces the injected faults, reseeds the fault RNG, and empties the
// poll limit's window (a new limit starts afresh).
func (e *Emulator) SetFaults(f Faults) {
	e.pollMu.Lock()
	e.pollLog = nil
	e.pollMu.Unlock()
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	e.faults = f
	e.rng = rand.New(rand.NewPCG(uint64(f.Seed), uint64(f.Seed)^0x9e3779b97f4a7c15))
	e.writerRNG = rand.New(rand.NewPCG(uint64(f.Seed)^0x5851f42d4c957f2d, uint64(f.Seed)))
	e.userPages = 0
	e.writerDeletes = nil
}

// WriterDeletes returns the IDs of the users and tokens the concurrent writer deleted
// since the last SetFaults (a user's tokens are not listed separately), oldest first.
func (e *Emulator) WriterDeletes() []string {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	return append([]string(nil), e.writerDeletes...)
}

// roll takes the current faults and one random number for this request. Every request
// takes exactly one number, so a seeded run that makes the same calls in the same order
// meets the same faults.
func (e *Emulator) roll() (Faults, float64) {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	return e.faults, e.rng.Float64()
}

// pickFault maps a roll to a fault kind ("" for none). The rates partition [0, 1):
// 5xx first, then 429, then lost (POST only) or bad body (GET only).
func pickFault(f Faults, roll float64, post bool) string {
	edge := f.Rate5xx
	if roll < edge {
		return fault5xx
	}
	edge += f.Rate429
	if roll < edge {
		return fault429
	}
	if post {
		if roll < edge+f.RateLost {
			return faultLost
		}
		return ""
	}
	if roll < edge+f.RateBadBody {
		return faultBadBody
	}
	return ""
}

var serverErrors = []struct {
	status int
	code   string
}{
	{http.StatusInternalServerError, "INTERNAL_SERVER_ERROR"},
	{http.StatusBadGateway, "BAD_GATEWAY"},
	{http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE"},
	{http.StatusGatewayTimeout, "GATEWAY_TIMEOUT"},
}

// injectFault answers a request with a fault instead of acting on it.
func (e *Emulator) injectFault(w http.ResponseWriter, kind string, f Faults, roll float64, jsonl bool) {
	switch kind {
	case fault5xx:
		// Reuse the roll, scaled into the 5xx band, to choose the status: no extra draw.
		i := int(roll / f.Rate5xx * float64(len(serverErrors)))
		se := serverErrors[min(i, len(serverErrors)-1)]
		writeError(w, &apiError{status: se.status, code: se.code, msg: "injected server error"})
	case fault429:
		ae := &apiError{status: http.StatusTooManyRequests, code: "TOO_MANY_REQUESTS", msg: "too many requests"}
		if f.RetryAfter > 0 {
			ae.header = http.Header{"Retry-After": {strconv.FormatInt(retryAfterSeconds(f.RetryAfter), 10)}}
		}
		writeError(w, ae)
	case faultBadBody:
		// The ~19 s trap: the platform switched a slow JSON call to a stream and the
		// error arrived after the 200. The content type still says JSON, so only a
		// client that checks the body's shape notices.
		// A streamed list fails the same way, after its keep-alive line.
		body := `{"type":"error","data":{"message":"injected error after the answer started","code":"INTERNAL_SERVER_ERROR"}}` + "\n"
		ct := "application/json"
		if jsonl {
			ct, body = "application/jsonl", `{"type":"nop"}`+"\n"+body
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(body))
	}
}

// dropConnection closes the connection without answering, as a network that lost the
// answer would. Without a Hijacker (HTTP/2, or a handler not run by net/http) it aborts
// the response with http.ErrAbortHandler, which net/http turns into a reset stream.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// retryAfterSeconds is d in whole seconds, rounded up (Retry-After has no fractions).
func retryAfterSeconds(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }

// takeLate reports whether this token create is one of the Faults.LateCreates first.
func (e *Emulator) takeLate(f Faults) bool {
	e.lateMu.Lock()
	defer e.lateMu.Unlock()
	if e.lateTaken >= f.LateCreates {
		return false
	}
	e.lateTaken++
	return true
}

func (e *Emulator) lateDone() {
	e.lateMu.Lock()
	defer e.lateMu.Unlock()
	e.lateDoneN++
	if e.lateCond != nil {
		e.lateCond.Broadcast()
	}
}

// LateCommitted blocks until n late token creates (Faults.LateCreates) have been
// completed and answered, for a test to go on once the server has acted.
func (e *Emulator) LateCommitted(n int) {
	e.lateMu.Lock()
	defer e.lateMu.Unlock()
	if e.lateCond == nil {
		e.lateCond = sync.NewCond(&e.lateMu)
	}
	for e.lateDoneN < n {
		e.lateCond.Wait()
	}
}

// concurrentWriter is the concurrent-writer fault: after a page whose last item is
// last was served, it may delete that item. The caller holds e.mu.
func (e *Emulator) concurrentWriter(rt routed, last string) {
	e.faultMu.Lock()
	f := e.faults
	del := false
	if rt.op == opUserList {
		e.userPages++
		del = f.DeleteEvery > 0 && e.userPages%f.DeleteEvery == 0
	}
	if f.DeleteRate > 0 && e.writerRNG.Float64() < f.DeleteRate {
		del = true
	}
	if f.DeleteMax > 0 && len(e.writerDeletes) >= f.DeleteMax {
		del = false
	}
	if del {
		e.writerDeletes = append(e.writerDeletes, last)
	}
	e.faultMu.Unlock()
	if !del {
		return
	}
	if rt.op == opUserList {
		if u := e.userByID[last]; u != nil {
			e.deleteUser(u)
		}
	} else if t := e.tokenByID[last]; t != nil && e.tokenUser[last] == rt.userID {
		e.deleteToken(rt.userID, t)
	}
	e.countFault(faultDelete)
}
