package client

import (
	"context"
	"errors"
)

// scrub makes sure the API token cannot leave the package inside an error. net/http
// puts URLs, not headers, into its errors, and the server could still echo the token
// in a message; a check at the one exit costs nothing and needs no trust in either.
func (c *Client) scrub(err error) error {
	if err == nil || c.scrubText(err.Error()) == err.Error() {
		return err
	}
	// The error chain holds the token somewhere, so none of it may be kept: rebuild
	// the parts callers inspect (APIError, LostAnswerError, sentinels) from text.
	var le *LostAnswerError
	if errors.As(err, &le) {
		return &LostAnswerError{Op: le.Op, Err: c.scrubLeaf(le.Err)}
	}
	return c.scrubLeaf(err)
}

func (c *Client) scrubLeaf(err error) error {
	var ae *APIError
	if errors.As(err, &ae) {
		return &APIError{Op: ae.Op, Status: ae.Status, Code: c.scrubText(ae.Code), Message: c.scrubText(ae.Message)}
	}
	return &redactedError{msg: c.scrubText(err.Error()), is: sentinelsOf(err)}
}

// scrubText removes the token, and every other secret the redactor knows, from s in
// any of its forms (state.Redactor), including a piece of it: a text cut short (an
// error body, a snippet) may hold a token cut in two.
func (c *Client) scrubText(s string) string {
	return c.redact.String(s)
}

// redactedError is an error whose text had the token removed. It keeps answering
// errors.Is for the sentinels callers test, but not the original chain.
type redactedError struct {
	msg string
	is  []error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Is(target error) bool {
	for _, s := range e.is {
		if s == target {
			return true
		}
	}
	return false
}

func sentinelsOf(err error) []error {
	var out []error
	for _, s := range []error{context.Canceled, context.DeadlineExceeded, ErrDryRun, ErrMalformed, errTimeout, ErrRedirect, ErrUnreachable} {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}
