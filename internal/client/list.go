package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ListOptions select and order the items of a list.
type ListOptions struct {
	Order string            // "", "asc" or "desc" (the API's default is desc)
	Take  int               // page size, 1..100; 0 means 100. Not sent in JSONL mode.
	Email string            // users only: the exact email
	Meta  map[string]string // meta.K=V filters; keys must not contain dots
}

// pageSize is the largest page the API gives, and the default.
const pageSize = 100

// maxLineSize bounds one JSONL line: a user with a large meta still fits.
const maxLineSize = 16 << 20

// ListUsers iterates over every partner user, page by page (or over one streamed
// answer in JSONL mode). An error is yielded once, last.
func (c *Client) ListUsers(ctx context.Context, o ListOptions) iter.Seq2[state.User, error] {
	return list(ctx, c, OpUserList, c.endpoint("user", "list"), o, func(u state.User) string { return u.ID })
}

// ListTokens iterates over every token of a user (never their secrets).
func (c *Client) ListTokens(ctx context.Context, userID string, o ListOptions) iter.Seq2[state.Token, error] {
	if userID == "" {
		return failed[state.Token](fmt.Errorf("%s: empty user id", OpTokenList))
	}
	return list(ctx, c, OpTokenList, c.endpoint("user", userID, "token", "list"), o, func(t state.Token) string { return t.ID })
}

func failed[T any](err error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		yield(zero, err)
	}
}

func (o ListOptions) query(op string) (url.Values, error) {
	q := url.Values{}
	switch o.Order {
	case "":
	case "asc", "desc":
		q.Set("order", o.Order)
	default:
		return nil, fmt.Errorf("%s: order %q: want asc or desc", op, o.Order)
	}
	if o.Email != "" {
		q.Set("email", o.Email)
	}
	for k, v := range o.Meta {
		if k == "" || strings.Contains(k, ".") {
			// The API reads a dot as a JSON path step, so such a key cannot match.
			return nil, fmt.Errorf("%s: meta filter key %q: must be non-empty and without dots", op, k)
		}
		q.Set("meta."+k, v)
	}
	return q, nil
}

func list[T any](ctx context.Context, c *Client, op string, u *url.URL, o ListOptions, id func(T) string) iter.Seq2[T, error] {
	q, err := o.query(op)
	if err != nil {
		return failed[T](err)
	}
	if c.jsonl {
		return stream(ctx, c, op, u, q, id)
	}
	return paged(ctx, c, op, u, q, o.Take, id)
}

// paged walks the pages of a list: each page is one GET, repeated on failure (the
// cursor makes that safe), and decoded whole before its items are yielded. As in
// stream, an item is yielded once even if the server shows it twice.
func paged[T any](ctx context.Context, c *Client, op string, u *url.URL, q url.Values, take int, id func(T) string) iter.Seq2[T, error] {
	if take <= 0 || take > pageSize {
		take = pageSize
	}
	return func(yield func(T, error) bool) {
		var zero T
		q := maps.Clone(q) // each iteration starts from the first page
		q.Set("take", strconv.Itoa(take))
		cursor := ""
		seen := map[string]struct{}{}
		for {
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			pu := *u
			pu.RawQuery = q.Encode()
			var items []T
			var next string
			err := c.do(ctx, &request{op: op, kind: kindRead, url: &pu, handle: func(resp *http.Response, _ *watchdog) error {
				items, next = nil, ""
				var page object
				if err := readObject(op, resp, &page); err != nil {
					return err
				}
				if ok, err := page.member(op, "items", &items); err != nil {
					return err
				} else if !ok || items == nil {
					return malformed(op, "no items array")
				}
				if _, err := page.member(op, "cursor", &next); err != nil {
					return err
				}
				for i, it := range items {
					if id(it) == "" {
						return malformed(op, "item %d has no id", i)
					}
				}
				return nil
			}})
			if err != nil {
				yield(zero, err)
				return
			}
			// A short page is the last one: asking for the empty page after it
			// would cost a call (and a list call counts against the rate limit).
			last := len(items) < take || next == ""
			if !last && next == cursor {
				// The page we asked to start after came back: its items were
				// yielded already.
				yield(zero, malformed(op, "the cursor did not advance"))
				return
			}
			for _, it := range items {
				if _, dup := seen[id(it)]; dup {
					continue
				}
				seen[id(it)] = struct{}{}
				if !yield(it, nil) {
					return
				}
			}
			if last {
				return
			}
			cursor = next
		}
	}
}

// stream reads a list as one JSONL answer. The decoding is by hand because the
// answer is a sequence of typed events, not one document. When the stream fails
// midway the GET is repeated, and the items already yielded are skipped, so each
// is yielded once.
func stream[T any](ctx context.Context, c *Client, op string, u *url.URL, q url.Values, id func(T) string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		seen := map[string]struct{}{}
		su := *u
		su.RawQuery = q.Encode()
		err := c.do(ctx, &request{op: op, kind: kindRead, url: &su, accept: "application/jsonl", handle: func(resp *http.Response, wd *watchdog) error {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 0, 64<<10), maxLineSize)
			for n := 1; sc.Scan(); n++ {
				wd.kick()
				line := bytes.Trim(sc.Bytes(), jsonSpace)
				if len(line) == 0 {
					continue
				}
				// The event's keys are matched exactly, as in decodeObject.
				var ev object
				var typ string
				if err := json.Unmarshal(line, &ev); err != nil {
					return malformed(op, "line %d: %v", n, err)
				}
				if raw, ok := ev["type"]; ok {
					if err := json.Unmarshal(raw, &typ); err != nil {
						return malformed(op, "line %d: type: %v", n, err)
					}
				}
				switch typ {
				case "nop":
				case "error":
					var eb struct {
						Message any `json:"message"`
						Code    any `json:"code"`
					}
					_, _ = ev.member(op, "data", &eb)
					return &APIError{Op: op, Status: http.StatusOK, Code: stringish(eb.Code), Message: stringish(eb.Message)}
				case "item":
					var it T
					raw, ok := ev["data"]
					if !ok {
						return malformed(op, "line %d: item without data", n)
					}
					if err := json.Unmarshal(raw, &it); err != nil {
						return malformed(op, "line %d: %v", n, err)
					}
					key := id(it)
					if key == "" {
						return malformed(op, "line %d: item has no id", n)
					}
					if _, dup := seen[key]; dup {
						continue
					}
					seen[key] = struct{}{}
					wd.pause() // the consumer may be slow; the server is not to blame
					more := yield(it, nil)
					wd.kick()
					if !more {
						return errStop
					}
				default:
					return malformed(op, "line %d: unknown event type %q", n, typ)
				}
			}
			if err := sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					return malformed(op, "a line is longer than %d bytes", maxLineSize)
				}
				return fmt.Errorf("%s: reading the stream: %w", op, err)
			}
			return nil
		}})
		if err != nil && !errors.Is(err, errStop) {
			yield(zero, err)
		}
	}
}
