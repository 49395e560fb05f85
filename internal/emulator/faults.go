package emulator

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

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
