package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// kind says what may be repeated of a request when its answer is not usable.
type kind int

const (
	kindRead       kind = iota // GET: repeated on any transient failure
	kindIdempotent             // update, delete: repeating has the same effect as once
	kindCreate                 // create: repeated only when it was surely not processed
)

// request is one logical API call; do sends it as many times as its kind allows.
type request struct {
	op     string
	kind   kind
	url    *url.URL
	body   []byte // nil for a GET
	accept string
	// handle reads a 2xx answer; an error means the answer was not usable. It may
	// pause the watchdog while it hands items to a slow consumer.
	handle func(resp *http.Response, wd *watchdog) error
}

// class sorts the outcome of one attempt by what may follow it.
type class int

const (
	classFinal          class = iota // success, or an error that repeating cannot fix
	classNotProcessed                // the server surely did nothing (429, refused dial)
	classMaybeProcessed              // the server may have acted (5xx, lost answer, bad body)
)

type result struct {
	err         error
	class       class
	status      int           // the HTTP status; 0 when no answer came
	answered    time.Time     // when the answer's status arrived; zero when none came
	pollLimited bool          // a poll refused by the poll limit: wait for the window, then again
	retryAfter  time.Duration // from the Retry-After header; 0 when absent
	throttled   bool          // a 429 TOO_MANY_REQUESTS: slows every request of the client
	inFlight    bool          // the caller's ctx ended while the request may have been processed
}

// errStop is returned by a handler when the consumer of a list stopped early.
var errStop = errors.New("iteration stopped")

var errTimeout = errors.New("request timed out")

const (
	maxBackoff   = 30 * time.Second
	maxJSONBody  = 64 << 20
	maxErrorBody = 64 << 10
)

// do sends r, repeating it as its kind and the answers allow, within RetryMaxElapsed
// and ctx. Every error it returns has been scrubbed of the token.
func (c *Client) do(ctx context.Context, r *request) error {
	return c.scrub(c.doRaw(ctx, r))
}

func (c *Client) doRaw(ctx context.Context, r *request) error {
	if r.body != nil && c.dryRun {
		return fmt.Errorf("%s: %w", r.op, ErrDryRun)
	}
	fam, release, err := c.familyFor(ctx, r)
	if err != nil {
		return err
	}
	defer release()
	probing := c.Paths() == PathsAuto
	var first result // the answer of the first family tried, while probing
	rejections := 0  // of a poll by the poll limit, in a row
	start := c.clock.Now()
	var last result
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.retries.Add(1)
		}
		if err := c.waitTurn(ctx, c.retryDeadline(ctx, start)); err != nil {
			return c.interrupted(r, err, last)
		}
		var slot *pollSlot
		if isPoll(r.op) {
			s, waited, err := c.polls.acquire(ctx)
			if err != nil {
				return c.interrupted(r, err, last)
			}
			// Waiting for the poll window is pacing, not retrying: it does not use up
			// the retry time.
			slot, start = s, start.Add(waited)
		}
		res := c.attempt(ctx, r, fam, probing, release)
		if slot != nil {
			c.polls.finish(slot, res.answered, res.pollLimited)
		}
		if res.pollLimited {
			// The window slides: the poll waits for a slot (acquire) and goes again.
			if rejections++; rejections < maxPollRejections {
				last = res
				continue
			}
			return fmt.Errorf("%w (rejected %d times in a row, each after waiting for the window)", res.err, rejections)
		}
		if probing && res.status == http.StatusNotFound && c.Paths() == PathsAuto {
			if first.err == nil {
				// The path may be the other family's: try it once, at once (a 404
				// is final, so this is a second family, not a retry).
				first, fam = res, otherFamily(fam)
				attempt--
				continue
			}
			return c.noRoute(r, first, res)
		}
		switch res.class {
		case classFinal:
			if res.inFlight && r.kind != kindRead {
				// The caller gave up while a write was in flight.
				return &LostAnswerError{Op: r.op, Err: res.err}
			}
			if r.op == OpUserList && res.status == http.StatusNotFound {
				return fmt.Errorf("%w (the API paths are set to %s: %s; --api-paths auto finds them)", res.err, fam, c.familyURL(fam, r.url).Redacted())
			}
			return res.err
		case classMaybeProcessed:
			if r.kind == kindCreate {
				return &LostAnswerError{Op: r.op, Err: res.err}
			}
		}
		last = res

		delay := c.backoff(attempt, res)
		if res.throttled {
			// Every request of the client waits for this, not just the one repeated,
			// each no longer than its own retry deadline (see pause).
			c.pause.push(c.clock.Now().Add(delay), delay, res.err)
		}
		if c.clock.Now().Add(delay).Sub(start) > c.maxRetry {
			c.log.Warn("api giving up", "op", r.op, "attempts", attempt+1, "error", c.scrubText(res.err.Error()))
			return c.giveUp(r, res)
		}
		c.log.Warn("api retry", "op", r.op, "attempt", attempt+1, "delay", delay, "error", c.scrubText(res.err.Error()))
		if !res.throttled {
			// A throttled retry waits in waitTurn, with everyone else.
			if err := c.clock.Sleep(ctx, delay); err != nil {
				return c.interrupted(r, err, last)
			}
		}
	}
}

// noRoute is the error of a request that both path families answered 404. For a
// list that means the URL is wrong; for an operation on one object it may also be
// the object that is missing, so the family stays undecided and the 404 is returned.
func (c *Client) noRoute(r *request, first, second result) error {
	if r.op != OpUserList {
		return first.err
	}
	return fmt.Errorf("%w: neither %s nor %s exists: check the API URL (--api-url)", first.err,
		c.familyURL(PathsPartner, r.url).Redacted(), c.familyURL(PathsUser, r.url).Redacted())
}

// giveUp is the error of a call whose retries ran out.
func (c *Client) giveUp(r *request, last result) error {
	if last.class == classMaybeProcessed && r.kind != kindRead {
		return &LostAnswerError{Op: r.op, Err: last.err}
	}
	return last.err
}

// interrupted is the error of a call whose ctx ended while it waited to (re)send, or
// that was not sent because the shared pause outlasts its retry deadline.
func (c *Client) interrupted(r *request, err error, last result) error {
	if last.err != nil {
		err = fmt.Errorf("%s: %w (after: %v)", r.op, err, last.err)
	} else {
		err = fmt.Errorf("%s: %w", r.op, err)
	}
	if last.class == classMaybeProcessed && r.kind != kindRead {
		return &LostAnswerError{Op: r.op, Err: err}
	}
	return err
}

// backoff is the wait before repeat number attempt+1: the server's Retry-After when
// given (at most maxRetryAfter), else exponential backoff with full jitter. A 429
// without Retry-After uses equal jitter instead, so that the pause shared by all
// requests is never near zero.
func (c *Client) backoff(attempt int, res result) time.Duration {
	if res.retryAfter > 0 {
		return min(res.retryAfter, maxRetryAfter)
	}
	d := c.retryBase << min(attempt, 30)
	if d <= 0 || d > maxBackoff {
		d = maxBackoff
	}
	if res.throttled {
		return d/2 + c.jitter(d/2)
	}
	return c.jitter(d)
}

// fullJitter picks a wait in [0, d].
func fullJitter(d time.Duration) time.Duration { return rand.N(d + 1) }

// retryDeadline is when a call that started at start stops retrying: after its
// retry time, or at ctx's deadline if that comes first.
func (c *Client) retryDeadline(ctx context.Context, start time.Time) time.Time {
	deadline := start.Add(c.maxRetry)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		return d
	}
	return deadline
}

// waitTurn waits for the shared pause after a 429 (failing at once when it ends after
// deadline, see pause) and for the rate limiter.
func (c *Client) waitTurn(ctx context.Context, deadline time.Time) error {
	if err := c.pause.wait(ctx, c.clock, deadline); err != nil {
		return err
	}
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			return err
		}
	}
	return context.Cause(ctx)
}

// watchdog cancels a request that makes no progress for the client's Timeout. A
// plain answer must arrive whole within it; a stream must deliver a line within it.
type watchdog struct {
	t *time.Timer
	d time.Duration
}

// kick restarts the countdown after progress.
func (w *watchdog) kick() { w.t.Reset(w.d) }

// pause stops the countdown while the consumer, not the server, is slow.
func (w *watchdog) pause() { w.t.Stop() }

// attempt sends r once, to path family fam, and sorts the outcome. While probing
// (the family is not known yet), an answer that shows the path exists decides the
// family, and release lets the requests waiting for that go.
func (c *Client) attempt(ctx context.Context, r *request, fam PathFamily, probing bool, release func()) result {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wd := &watchdog{t: time.AfterFunc(c.timeout, func() { cancel(errTimeout) }), d: c.timeout}
	defer wd.pause()

	method := http.MethodGet
	var body io.Reader
	if r.body != nil {
		method = http.MethodPost
		body = bytes.NewReader(r.body)
	}
	u := c.familyURL(fam, r.url)
	req, err := http.NewRequestWithContext(rctx, method, u.String(), body)
	if err != nil {
		return result{err: fmt.Errorf("%s: %w", r.op, err)}
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", orDefault(r.accept, "application/json"))
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	fb, err := c.fence(req, r.body)
	if err != nil {
		return result{err: notSent(r.op, err)}
	}
	c.calls[r.op].Add(1)
	t0 := time.Now()
	resp, err := c.hc.Do(req)
	if gerr := fb.refused(); gerr != nil {
		return result{err: notSent(r.op, gerr)}
	}
	if err != nil {
		c.log.Debug("api request", "op", r.op, "method", method, "path", c.scrubText(u.Path), "error", c.scrubText(err.Error()), "duration", time.Since(t0))
		return c.transportFailure(ctx, rctx, r, u, err)
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}()
	answered := c.clock.Now()
	c.reached.Store(true)
	c.log.Debug("api request", "op", r.op, "method", method, "path", c.scrubText(u.Path), "status", resp.StatusCode, "duration", time.Since(t0))
	if probing && decidesFamily(resp.StatusCode) {
		c.setFamily(fam)
		release()
	}
	res := c.sortAnswer(ctx, rctx, r, u, resp, wd)
	res.status, res.answered = resp.StatusCode, answered
	return res
}

// sortAnswer sorts an HTTP answer; a 2xx is handed to the request's handler.
func (c *Client) sortAnswer(ctx, rctx context.Context, r *request, u *url.URL, resp *http.Response, wd *watchdog) result {
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		herr := r.handle(resp, wd)
		switch {
		case herr == nil:
			return result{}
		case errors.Is(herr, errStop):
			return result{err: errStop}
		case errors.As(herr, new(permanentError)):
			return result{err: herr}
		case rctx.Err() != nil:
			return c.transportFailure(ctx, rctx, r, u, herr)
		case isPoll(r.op) && IsPollLimit(herr):
			// The limit reported inside a streamed answer, after its 200.
			return result{err: herr, class: classNotProcessed, pollLimited: true}
		}
		return result{err: herr, class: classMaybeProcessed}
	case s >= 300 && s < 400:
		return result{err: c.redirectError(r.op, u, resp)}
	case s == http.StatusTooManyRequests:
		c.throttled.Add(1)
		ae := c.readAPIError(r.op, resp)
		switch limitOf(ae) {
		case limitQuota:
			return result{err: ae}
		case limitPoll:
			if isPoll(r.op) {
				return result{err: ae, class: classNotProcessed, pollLimited: true}
			}
		}
		// TOO_MANY_REQUESTS, or a rate limit on a request that is not a poll: the
		// server did nothing; every request of the client backs off.
		return result{err: ae, class: classNotProcessed, throttled: true, retryAfter: c.retryAfter(resp)}
	case s >= 500:
		return result{err: c.readAPIError(r.op, resp), class: classMaybeProcessed, retryAfter: c.retryAfter(resp)}
	default:
		return result{err: c.readAPIError(r.op, resp)}
	}
}

// redirectError is the error of a 3xx answer. The Partner API never redirects, and
// following one would send the token wherever it points, so it is not followed; the
// error says where it pointed (the token scrubbed from it like from any error).
func (c *Client) redirectError(op string, from *url.URL, resp *http.Response) error {
	to := "nowhere (no Location header)"
	if loc := resp.Header.Get("Location"); loc != "" {
		if lu, err := from.Parse(loc); err == nil {
			to = lu.Redacted()
		} else {
			to = fmt.Sprintf("%q", loc)
		}
	}
	return fmt.Errorf("%s: %w: %s answered %d pointing to %s; it was not followed, so the token went nowhere else: check the API URL (--api-url)",
		op, ErrRedirect, from.Redacted(), resp.StatusCode, to)
}

// transportFailure sorts an error met while sending or reading.
func (c *Client) transportFailure(ctx, rctx context.Context, r *request, u *url.URL, err error) result {
	if ctx.Err() != nil {
		// The caller's context ended: not retried.
		return result{err: fmt.Errorf("%s: %w", r.op, context.Cause(ctx)), inFlight: !isDialError(err)}
	}
	if errors.Is(context.Cause(rctx), errTimeout) {
		return result{err: fmt.Errorf("%s: no answer within %s: %w", r.op, c.timeout, errTimeout), class: classMaybeProcessed}
	}
	if ue := c.unreachable(r.op, u, err); ue != nil {
		return result{err: ue}
	}
	if isDialError(err) {
		return result{err: fmt.Errorf("%s: %w", r.op, err), class: classNotProcessed}
	}
	return result{err: fmt.Errorf("%s: %w", r.op, err), class: classMaybeProcessed}
}

// isDialError reports an error met before any byte of the request could be sent:
// only then is a create safe to repeat. Anything else may have reached the server.
func isDialError(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// retryAfter reads Retry-After as seconds or as an HTTP date.
func (c *Client) retryAfter(resp *http.Response) time.Duration {
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(c.clock.Now()); d > 0 {
			return d
		}
	}
	return 0
}

// readAPIError builds the error of a non-2xx answer. The body is tolerated in any
// form: a proxy may answer with HTML or nothing at all.
func (c *Client) readAPIError(op string, resp *http.Response) *APIError {
	ae := &APIError{Op: op, Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb struct {
		Message any `json:"message"`
		Code    any `json:"code"`
	}
	if err := jsonUnmarshal(b, &eb); err == nil {
		ae.Message, ae.Code = stringish(eb.Message), stringish(eb.Code)
	} else if text := strings.Join(strings.Fields(c.scrubText(string(b))), " "); text != "" {
		// Scrubbed before it is cut: a cut token is no longer found by scrub.
		const maxText = 200
		if len(text) > maxText {
			text = text[:maxText] + "..."
		}
		ae.Message = text
	}
	// The quota code may come only in the header; when either says LIMITS_REACHED,
	// that decides, since repeating a quota error cannot help.
	if h := strings.TrimSpace(resp.Header.Get("X-Failure-Code")); h != "" && (ae.Code == "" || h == "LIMITS_REACHED") {
		ae.Code = h
	}
	return ae
}

func stringish(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}
