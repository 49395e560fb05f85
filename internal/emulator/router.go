package emulator

import (
	"crypto/subtle"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// routed is a request matched to an operation: the operation and the ids its path names.
type routed struct {
	op      string
	userID  string
	tokenID string
}

// request is what an operation reads: its route, the query, the body (POST only) and
// the faults in force when it arrived.
type request struct {
	routed
	query  url.Values
	body   []byte
	faults Faults
}

// An operation performs one API call on the store. It reports whether the state
// changed, which decides whether the answer waits for the journal (SaveOnWrite) and
// whether a lost answer or an answer delay can be injected.
type operation func(e *Emulator, req request) (answer any, changed bool, aerr *apiError)

// route is one of the nine operations: its method, its path below a family prefix
// (with {user} and {token} wildcards), its name in Counts, and its handler.
type route struct {
	method, path, op string
	do               operation
}

// routes are the Partner API's endpoints (docs/partner-api.md), users first.
var routes = []route{
	{http.MethodGet, "/user/list", opUserList, (*Emulator).list},
	{http.MethodPost, "/user/create", opUserCreate, (*Emulator).userCreate},
	{http.MethodGet, "/user/{user}/fetch", opUserFetch, (*Emulator).userFetch},
	{http.MethodPost, "/user/{user}/update", opUserUpdate, (*Emulator).userUpdate},
	{http.MethodPost, "/user/{user}/delete", opUserDelete, (*Emulator).userDelete},
	{http.MethodGet, "/user/{user}/token/list", opTokenList, (*Emulator).list},
	{http.MethodPost, "/user/{user}/token/create", opTokenCreate, (*Emulator).tokenCreate},
	{http.MethodPost, "/user/{user}/token/{token}/update", opTokenUpdate, (*Emulator).tokenUpdate},
	{http.MethodPost, "/user/{user}/token/{token}/delete", opTokenDelete, (*Emulator).tokenDelete},
}

// prefixes are the path prefixes of a family: routes are served below each.
func (p Paths) prefixes() []string {
	partner := []string{"/v1/partner", "/api/v1/partner"}
	switch p {
	case PathsUser:
		return []string{"/api/v1"}
	case PathsBoth:
		return append(partner, "/api/v1")
	}
	return partner
}

// newMux routes the served family's endpoints and the emulator's own. Each path is
// registered twice: with its method, to its handler, and without, to the 405 that
// names the method (ServeMux's own 405 is text/plain, not the API's JSON error).
// Anything else reaches "/", a 404.
func (e *Emulator) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, only(method, h))
		mux.Handle(path, notAllowed(method))
	}
	for _, prefix := range e.paths.prefixes() {
		for _, rt := range routes {
			handle(rt.method, prefix+rt.path, e.serveOp(rt))
		}
	}
	handle(http.MethodGet, "/_emulator/counts", e.serveCounts)
	handle(http.MethodPost, "/_emulator/reset-counts", e.serveResetCounts)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNoEndpoint(r.URL.Path))
	})
	return mux
}

// only answers 405 to any method but method: a "GET" pattern also matches HEAD,
// which the API does not serve.
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			writeError(w, methodNotAllowed(method))
			return
		}
		h(w, r)
	}
}

func notAllowed(method string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, methodNotAllowed(method))
	})
}

// errNoEndpoint is the 404 of a path no route has.
func errNoEndpoint(path string) *apiError {
	if strings.HasPrefix(path, "/_emulator/") {
		return errNotFound("no such emulator endpoint")
	}
	return errNotFound("no such endpoint")
}

// ServeHTTP serves the Partner API under the paths of its family (see Paths), and the
// emulator's own endpoints GET /_emulator/counts and POST /_emulator/reset-counts.
// Lost answers need a net/http server: the connection is hijacked and closed, or,
// without a Hijacker (HTTP/2), the handler panics with http.ErrAbortHandler, which
// net/http turns into a reset stream. With RateLost 0 no panic can happen.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.authorized(r) {
		writeError(w, &apiError{status: http.StatusUnauthorized, code: "NOT_AUTHENTICATED", msg: "missing or invalid bearer token"})
		return
	}
	r, ok := splitAsPlatform(r)
	if !ok {
		writeError(w, errNoEndpoint(r.URL.Path))
		return
	}
	e.mux.ServeHTTP(w, r)
}

// splitAsPlatform gives the mux a request whose path splits as the platform splits
// it: the decoded path cut at every "/", each segment taken literally. So an escaped
// "/" splits ("u1%2Ffetch" is a fetch of u1), "." and ".." are ids like any other, and
// a path with an empty segment ("//", a leading "//") matches nothing. ServeMux
// instead matches the escaped path and redirects a path it would clean (dot
// segments, "//"); so a path with an empty segment is refused here (ok false), and
// any other whose escaped form differs is re-escaped segment by segment, dots as %2E.
func splitAsPlatform(r *http.Request) (*http.Request, bool) {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		return r, false
	}
	segs := strings.Split(p[1:], "/")
	dots := false
	for _, s := range segs {
		dots = dots || s == "." || s == ".."
	}
	if !dots && r.URL.RawPath == "" {
		return r, true // the mux sees the path as it is
	}
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
		if s == "." || s == ".." {
			segs[i] = strings.Repeat("%2E", len(s))
		}
	}
	u := *r.URL
	u.RawPath = "/" + strings.Join(segs, "/")
	r = r.WithContext(r.Context())
	r.URL = &u
	return r, true
}

// serveOp serves one route: it counts the call, waits the injected latency, applies
// the poll limit and the injected faults, refuses a foreign user, reads the body,
// streams a JSONL listing or runs the operation, makes a change durable (SaveOnWrite)
// and answers, or loses or delays the answer as the faults say.
func (e *Emulator) serveOp(route route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rt := routed{op: route.op, userID: r.PathValue("user"), tokenID: r.PathValue("token")}
		e.countCall(rt.op)
		isList := rt.op == opUserList || rt.op == opTokenList

		// The lock is not held while waiting, so latency delays requests without
		// serialising them.
		f, roll := e.roll()
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return // the client is gone; act on nothing
			}
		}
		if isList && !e.admitPoll(f) {
			e.countFault(faultPoll)
			writeError(w, &apiError{status: http.StatusTooManyRequests, code: "LIMITS_REACHED", msg: "You have exceeded your allocated rate limits: rate/poll"})
			return
		}
		if fault := pickFault(f, roll, r.Method == http.MethodPost); fault != "" && fault != faultLost {
			e.countFault(fault)
			e.injectFault(w, fault, f, roll, acceptsJSONL(r))
			return
		}

		if rt.userID != "" && e.isForeign(rt.userID) {
			writeError(w, errForeign())
			return
		}
		var body []byte
		if r.Method == http.MethodPost {
			var err error
			body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				writeError(w, errBadRequest("reading the request body: %v", err))
				return
			}
		}
		if isList && acceptsJSONL(r) {
			e.streamList(w, r, rt)
			return
		}
		if rt.op == opTokenCreate && e.takeLate(f) {
			// The server goes on although the client may be gone: no r.Context() here.
			time.Sleep(f.LateCommit)
			defer e.lateDone()
		}
		ans, changed, aerr := route.do(e, request{routed: rt, query: r.URL.Query(), body: body, faults: f})
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		if changed && e.saveOnWrite {
			e.mu.Lock()
			v := e.version // this change's version, or a later one
			e.mu.Unlock()
			if err := e.saveAtLeast(v); err != nil {
				// The change is made in memory but not on disk: say so, as a server that
				// failed after acting would.
				writeError(w, &apiError{status: http.StatusInternalServerError, code: "INTERNAL_SERVER_ERROR", msg: "the change was made but the state was not saved"})
				return
			}
		}
		if changed && pickFault(f, roll, true) == faultLost {
			e.countFault(faultLost)
			dropConnection(w)
			return
		}
		if changed && f.AnswerDelay > 0 {
			// A server that answers after acting: a client that dies meanwhile never
			// learns what was done.
			t := time.NewTimer(f.AnswerDelay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		writeJSON(w, http.StatusOK, ans)
	}
}

func (e *Emulator) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(scheme):])), e.token) == 1
}

// serveCounts answers GET /_emulator/counts: the calls, faults and polls counted.
func (e *Emulator) serveCounts(w http.ResponseWriter, _ *http.Request) {
	admitted, rejected := e.PollCounts()
	e.faultMu.Lock()
	limit, window := e.faults.pollLimit()
	e.faultMu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"calls": e.Counts(), "faults": e.FaultCounts(),
		"polls": map[string]any{"admitted": admitted, "rejected": rejected, "limit": limit, "window_ms": window.Milliseconds()}})
}

// serveResetCounts answers POST /_emulator/reset-counts.
func (e *Emulator) serveResetCounts(w http.ResponseWriter, _ *http.Request) {
	e.ResetCounts()
	writeJSON(w, http.StatusOK, map[string]any{})
}
