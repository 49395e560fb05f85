package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// APIError is an answer of the Partner API with a non-2xx status, or a 200 whose body
// carried an error (a streamed answer can fail after its status was sent).
type APIError struct {
	Op      string // operation, e.g. "user.create"
	Status  int    // HTTP status; 200 for an error inside a streamed body
	Code    string // API code, e.g. "CONFLICT", "LIMITS_REACHED"
	Message string // API message
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code == "LIMITS_REACHED" {
		msg += " (" + limitNote(e) + ")"
	}
	if e.Status == http.StatusForbidden {
		if e.Op == OpUserList {
			msg += " (the token may not manage partner users: is it the partner account's token?)"
		} else {
			msg += " (forbidden: the user belongs to another partner account, or the token may not act on it; not retried, and not taken for a deleted user)"
		}
	}
	if e.Code != "" {
		return fmt.Sprintf("%s: %d %s: %s", e.Op, e.Status, e.Code, msg)
	}
	return fmt.Sprintf("%s: %d: %s", e.Op, e.Status, msg)
}

// LostAnswerError says that a POST was sent but its answer never arrived (timeout,
// reset, or a 5xx after the server may have acted): the change may or may not have
// been made. The apply engine resolves it by looking the object up, never by a blind
// retry.
type LostAnswerError struct {
	Op  string
	Err error
}

func (e *LostAnswerError) Error() string {
	return fmt.Sprintf("%s: the answer was lost, the request may have been applied: %v", e.Op, e.Err)
}

func (e *LostAnswerError) Unwrap() error { return e.Err }

// ErrDryRun is returned, before anything is sent, for any write made by a client in
// dry-run mode.
var ErrDryRun = errors.New("dry-run: refusing to send a write request")

// ErrRedirect is wrapped by the error of a 3xx answer: the API does not redirect, and
// a redirect is never followed, so the token is never sent anywhere else.
var ErrRedirect = errors.New("the API does not redirect")

// ErrInsecureURL is returned for an http:// API URL whose host is not loopback.
var ErrInsecureURL = errors.New("refusing http:// for a host that is not loopback; use https://")

func apiCode(err error) (int, string, bool) {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status, ae.Code, true
	}
	return 0, "", false
}

// IsNotFound reports a 404.
func IsNotFound(err error) bool { s, _, ok := apiCode(err); return ok && s == http.StatusNotFound }

// IsConflict reports a 409 (a duplicate email on user create).
func IsConflict(err error) bool { s, _, ok := apiCode(err); return ok && s == http.StatusConflict }

// IsQuota reports 429 LIMITS_REACHED for a quota (database or account limits, or a
// message that names no rate limit): it will not clear by waiting.
func IsQuota(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests && limitOf(ae) == limitQuota
}

// IsPollLimit reports LIMITS_REACHED for the poll limit (a message naming the rate
// limits, "rate/poll" or any "rate/..."): account-wide and transient, it clears as the
// window slides. It may come as a 429, or inside a streamed 200.
func IsPollLimit(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && limitOf(ae) == limitPoll
}

type limitKind int

const (
	limitNone  limitKind = iota
	limitPoll            // the poll limit: wait for the window
	limitQuota           // a quota: permanent
)

// limitOf decides, once for the whole client, what a LIMITS_REACHED means. The code is
// the same for the poll limit and for quotas; only the message tells them apart
// ("... allocated rate limits: rate/poll" vs "... database limits: ..." or "...
// account limits: ..."). A message that names neither is read as a quota — waiting
// could be forever — and the error says so.
func limitOf(ae *APIError) limitKind {
	if ae.Code != "LIMITS_REACHED" {
		return limitNone
	}
	m := strings.ToLower(ae.Message)
	if strings.Contains(m, "rate limits") || strings.Contains(m, "rate/") {
		return limitPoll
	}
	return limitQuota
}

// limitNote is what Error adds to a LIMITS_REACHED to say how it was read.
func limitNote(ae *APIError) string {
	m := strings.ToLower(ae.Message)
	switch {
	case limitOf(ae) == limitPoll:
		return "the poll limit: it clears as its window slides"
	case strings.Contains(m, "database limits") || strings.Contains(m, "account limits"):
		return "a quota: waiting will not clear it; not retried"
	}
	return "read as a quota, not retried: the message names no rate limit (rate/...), so waiting may never clear it"
}

// IsForbidden reports 403 (NOT_AUTHORIZED): for a partner user, one that belongs to
// another partner account. It is never retried, and never taken for a missing or
// deleted object (that is 404, IsNotFound).
func IsForbidden(err error) bool { s, _, ok := apiCode(err); return ok && s == http.StatusForbidden }

// IsAuth reports 401, 402 or 403: the credentials or subscription are wrong.
func IsAuth(err error) bool {
	s, _, ok := apiCode(err)
	return ok && (s == http.StatusUnauthorized || s == http.StatusPaymentRequired || s == http.StatusForbidden)
}

// IsLost reports a POST whose answer was lost (see LostAnswerError).
func IsLost(err error) bool {
	var le *LostAnswerError
	return errors.As(err, &le)
}

// ErrMalformed is wrapped by the error of a 2xx answer whose body has the wrong shape
// (not a JSON object, a list without items, a create without id): such an answer is
// never taken for an empty result.
var ErrMalformed = errors.New("malformed API answer")

// IsMalformed reports a 2xx answer of the wrong shape, or an error reported inside a
// 2xx body (a streamed answer that failed after its status was sent).
func IsMalformed(err error) bool {
	s, _, ok := apiCode(err)
	return errors.Is(err, ErrMalformed) || (ok && s >= 200 && s < 300)
}
