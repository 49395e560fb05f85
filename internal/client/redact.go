package client

import (
	"context"
	"errors"
	"strings"
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

// scrubText replaces the token in s, and any piece of it of minFragment bytes or
// more: a text cut short (an error body, a snippet) may hold a token cut in two.
func (c *Client) scrubText(s string) string {
	return redactToken(s, c.token.Reveal())
}

// minFragment is the shortest piece of the token that is redacted on its own: long
// enough not to match ordinary text, short enough that what is left of a token is
// worthless (the API's tokens carry 256 random bits).
const minFragment = 12

func redactToken(s, tok string) string {
	const mask = "[REDACTED]"
	if tok == "" {
		return s
	}
	s = strings.ReplaceAll(s, tok, mask)
	if len(tok) <= minFragment || len(s) < minFragment {
		return s
	}
	// Mark every byte covered by a minFragment-long window of the token; a longer
	// piece is covered by its overlapping windows.
	var mark []bool
	for k := 0; k+minFragment <= len(tok); k++ {
		w := tok[k : k+minFragment]
		for off := 0; off+minFragment <= len(s); {
			i := strings.Index(s[off:], w)
			if i < 0 {
				break
			}
			if mark == nil {
				mark = make([]bool, len(s))
			}
			for j := off + i; j < off+i+minFragment; j++ {
				mark[j] = true
			}
			off += i + 1
		}
	}
	if mark == nil {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if !mark[i] {
			b.WriteByte(s[i])
			continue
		}
		b.WriteString(mask)
		for i+1 < len(s) && mark[i+1] {
			i++
		}
	}
	return b.String()
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
