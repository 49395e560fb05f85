package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ListOptions select and order the items of a list.
type ListOptions struct {
	Order string            // "", "asc" or "desc" (the API's default is desc)
	Take  int               // page size, 1..100; 0 means the client's page size. Not sent in JSONL mode.
	Email string            // users only: the exact email
	Meta  map[string]string // meta.K=V filters; keys must not contain dots
}

// pageSize is the largest page the API gives, and the default.
const pageSize = 100

// maxLineSize bounds one JSONL line: a user with a large meta still fits.
const maxLineSize = 16 << 20

// The bounds of one listing, whatever the server answers (see listBudget). They are
// far above any real account (the config holds at most 100,000 users), so only a
// server that repeats itself or never ends meets them.
const (
	// MaxListItems is the number of items one listing may receive, repeats included.
	MaxListItems = 1_000_000
	// MaxListBytes is the number of bytes of answers one listing may read.
	MaxListBytes = 1 << 30
	// maxResumes bounds how often one listing starts again after a possible truncation.
	maxResumes = 1000
	// MaxUserTokens is the number of tokens one user's token list may hold: no
	// integration has that many, and a flooded user must not fill the memory.
	MaxUserTokens = 10_000
	// MaxRunItems is the number of items (users and tokens, repeats included) all the
	// listings of one client may receive together: many listings each under their own
	// bound (a million tokens across ten users) still end.
	MaxRunItems = 2_000_000
)

// ErrListBound is wrapped by the errors of a listing that was stopped because the
// server's answers broke a bound: a cursor cycle, too many items or bytes, a stream
// that sends nothing but keep-alives. Repeating the listing would not help.
var ErrListBound = errors.New("listing stopped")

// ListUsers iterates over every partner user. An error is yielded once, last.
//
// In JSONL mode an unfiltered listing is one streamed answer (one poll); a listing by
// email is one page, whose end needs no proof. Either way a listing that may have
// been cut short by a deleted cursor is resumed (see paged and stream), so every user
// that exists for the whole listing is yielded exactly once.
func (c *Client) ListUsers(ctx context.Context, o ListOptions) iter.Seq2[state.User, error] {
	l := lister[state.User]{c: c, op: OpUserList, u: c.endpoint("user", "list"),
		id: func(u state.User) string { return u.ID }, exists: c.userExists}
	if c.jsonl && o.Email == "" {
		return l.stream(ctx, o)
	}
	return l.paged(ctx, o)
}

// ListTokens iterates over every token of a user (never their secrets). Token lists
// are always paged: a user's tokens fit in one page, whose end needs no proof, and
// costs one poll like a stream would.
func (c *Client) ListTokens(ctx context.Context, userID string, o ListOptions) iter.Seq2[state.Token, error] {
	if userID == "" {
		return failed[state.Token](fmt.Errorf("%s: empty user id", OpTokenList))
	}
	l := lister[state.Token]{c: c, op: OpTokenList, u: c.endpoint("user", userID, "token", "list"),
		id: func(t state.Token) string { return t.ID }}
	return l.paged(ctx, o)
}

// userExists reports whether a user still exists, with a fetch (which is not a poll).
func (c *Client) userExists(ctx context.Context, id string) (bool, error) {
	_, err := c.FetchUser(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case IsNotFound(err):
		return false, nil
	}
	return false, err
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

// lister lists one collection.
type lister[T any] struct {
	c  *Client
	op string
	u  *url.URL
	id func(T) string
	// exists reports whether an item still exists without a poll; nil when the API
	// has no such call (tokens).
	exists func(ctx context.Context, id string) (bool, error)
}

// listBudget enforces the bounds of one listing: it counts every item and byte
// received, repeats included, so no answer, however hostile, can make a listing
// endless or its memory unbounded.
type listBudget struct {
	op                 string
	items, bytes       int64
	maxItems, maxBytes int64
	resumes            int
	// run counts the items of every listing of the client, up to maxRun.
	run    *atomic.Int64
	maxRun int64
}

func (l *lister[T]) budget() *listBudget {
	maxItems := l.c.maxListItems
	if l.op == OpTokenList {
		maxItems = min(maxItems, l.c.maxUserTokens)
	}
	return &listBudget{op: l.op, maxItems: maxItems, maxBytes: l.c.maxListBytes, run: &l.c.runItems, maxRun: l.c.maxRunItems}
}

func (b *listBudget) add(items int, n int64) error {
	b.items += int64(items)
	b.bytes += n
	run := b.run.Add(int64(items))
	switch {
	case b.op == OpTokenList && b.items > b.maxItems:
		return fmt.Errorf("%s: %w: more than %d tokens for one user; no integration has that many, so the server is repeating itself or the user is flooded with tokens: revoke them by hand", b.op, ErrListBound, b.maxItems)
	case b.items > b.maxItems:
		return fmt.Errorf("%s: %w: more than %d items received; no account has that many, so the server is repeating itself", b.op, ErrListBound, b.maxItems)
	case run > b.maxRun:
		return fmt.Errorf("%s: %w: more than %d users and tokens received in this run; no account has that many, so the server is repeating itself or the account is flooded", b.op, ErrListBound, b.maxRun)
	case b.bytes > b.maxBytes:
		return fmt.Errorf("%s: %w: more than %d MiB received; no account is that large, so the server is repeating itself", b.op, ErrListBound, b.maxBytes>>20)
	}
	return nil
}

// endedAt decides an end that could be the cursor trap: when item id (the cursor, or
// the last item streamed) still exists the listing really ended there; when it is gone
// (or the list has no way to tell), a resume is counted against b and the caller goes
// back to resume. One place for the paged and the streamed listing.
func (l *lister[T]) endedAt(ctx context.Context, id string, b *listBudget) (bool, error) {
	if l.exists != nil {
		ok, err := l.exists(ctx, id)
		if err != nil {
			return false, fmt.Errorf("%s: checking whether the list ended: %w", l.op, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, b.resume()
}

func (b *listBudget) resume() error {
	if b.resumes++; b.resumes > maxResumes {
		return fmt.Errorf("%s: %w: resumed %d times after items vanished under it; the list keeps changing, try again later", b.op, ErrListBound, maxResumes)
	}
	return nil
}

// permanentError marks an error of a handler that repeating the request cannot fix.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n += int64(n)
	return n, err
}

// paged walks the pages of a list, each page one GET, repeated on failure (the cursor
// makes that safe) and decoded whole before its items are yielded. An item is yielded
// once even if the server shows it twice.
//
// The end of a listing is proven in one of two ways. A page shorter than take is the
// end: the platform reads a page with one query (Prisma: cursor + skip 1), so a short
// page means that when it was read fewer than take items followed a cursor that
// existed; that holds even if the cursor is deleted a moment later. An empty page
// after a full one proves nothing: it is also the answer for a cursor whose item was
// deleted (the trap). Then the cursor is checked: if it still exists (a fetch, for
// users), the empty page was the end; if it is gone, or cannot be checked (tokens),
// the previous page is asked for again from its own cursor. That page shows whether
// the suspect cursor exists (then the empty page was the end) or carries on past it;
// if it is empty too, the walk goes one page further back, and from the first page,
// which has no cursor, an answer is always the truth.
func (l *lister[T]) paged(ctx context.Context, o ListOptions) iter.Seq2[T, error] {
	q, err := o.query(l.op)
	if err != nil {
		return failed[T](err)
	}
	take := o.Take
	if take <= 0 || take > pageSize {
		take = l.c.pageSize
	}
	return func(yield func(T, error) bool) {
		var zero T
		fail := func(err error) { yield(zero, err) }
		b := l.budget()
		q := maps.Clone(q) // each iteration starts from the first page
		q.Set("take", strconv.Itoa(take))
		chain := []string{""} // the cursors of the pages read, in order; "" is the first page
		asked := map[string]bool{"": true}
		seen := map[string]struct{}{}
		back := -1 // >= 0: re-reading from chain[back] whether chain[back+1]'s empty page was the end
		for {
			cursor := chain[len(chain)-1]
			if back >= 0 {
				cursor = chain[back]
			}
			items, next, n, err := l.page(ctx, q, cursor)
			if err == nil {
				err = b.add(len(items), n)
			}
			if err != nil {
				fail(err)
				return
			}
			suspectSeen := false
			for _, it := range items {
				key := l.id(it)
				if back >= 0 && key == chain[back+1] {
					suspectSeen = true
				}
				if _, dup := seen[key]; dup {
					continue
				}
				seen[key] = struct{}{}
				if !yield(it, nil) {
					return
				}
			}
			if back >= 0 {
				switch {
				case suspectSeen:
					// The suspect cursor exists, so it existed when its page came back
					// empty: that was the end (later items were created since).
					return
				case len(items) == 0 && back == 0:
					return // the first page is empty: the list is
				case len(items) == 0:
					// chain[back] is gone too, or so is everything after it.
					back--
					if err := b.resume(); err != nil {
						fail(err)
						return
					}
					continue
				}
				// chain[back] exists and the list goes on past the deleted cursor.
				chain, back = chain[:back+1], -1
			} else if len(items) == 0 {
				if len(chain) == 1 {
					return // the first page is empty: the list is
				}
				if ended, err := l.endedAt(ctx, cursor, b); err != nil {
					fail(err)
					return
				} else if ended {
					return
				}
				back = len(chain) - 2
				continue
			}
			// A short page is the last one: asking for the empty page after it would
			// cost a call (and a poll). A page without a cursor ends the list too.
			if len(items) < take || next == "" {
				return
			}
			if asked[next] {
				fail(fmt.Errorf("%s: %w: the server gave cursor %q a second time (a cursor cycle)", l.op, ErrListBound, next))
				return
			}
			asked[next] = true
			chain = append(chain, next)
		}
	}
}

// page reads one page: its items, its cursor and the size of the answer.
func (l *lister[T]) page(ctx context.Context, q url.Values, cursor string) ([]T, string, int64, error) {
	if cursor != "" {
		q.Set("cursor", cursor)
	} else {
		q.Del("cursor")
	}
	pu := *l.u
	pu.RawQuery = q.Encode()
	var items []T
	var next string
	var size int64
	err := l.c.do(ctx, &request{op: l.op, kind: kindRead, url: &pu, handle: func(resp *http.Response, _ *watchdog) error {
		items, next = nil, ""
		body := &countingReader{r: resp.Body}
		var page object
		err := readObjectFrom(l.op, body, &page)
		size += body.n // every attempt's bytes count
		if err != nil {
			return err
		}
		if ok, err := page.member(l.op, "items", &items); err != nil {
			return err
		} else if !ok || items == nil {
			return malformed(l.op, "no items array")
		}
		if _, err := page.member(l.op, "cursor", &next); err != nil {
			return err
		}
		for i, it := range items {
			if l.id(it) == "" {
				return malformed(l.op, "item %d has no id", i)
			}
		}
		return nil
	}})
	return items, next, size, err
}

// stream reads a list as JSONL answers: one streamed answer (one poll) when nothing
// vanishes meanwhile. The platform pages inside a stream with the same cursors, so a
// stream's end is not proof of the list's end: the last item streamed is checked with
// a fetch (not a poll). If it still exists, the stream was whole: it ended after that
// item, at a time the item existed. If it is gone, the listing goes on with a stream
// from the nearest earlier item that still exists (from the start if none of the last
// few does), and its end is checked the same way.
func (l *lister[T]) stream(ctx context.Context, o ListOptions) iter.Seq2[T, error] {
	q, err := o.query(l.op)
	if err != nil {
		return failed[T](err)
	}
	return func(yield func(T, error) bool) {
		var zero T
		fail := func(err error) { yield(zero, err) }
		b := l.budget()
		seen := map[string]int{} // id -> position in order
		var order []string       // the ids yielded, in list order
		stopped := false
		emit := func(it T) bool {
			key := l.id(it)
			if _, dup := seen[key]; dup {
				return true
			}
			seen[key] = len(order)
			order = append(order, key)
			if !yield(it, nil) {
				stopped = true
				return false
			}
			return true
		}
		after := ""
		for {
			last, err := l.streamOnce(ctx, q, after, b, emit)
			if stopped {
				return
			}
			if err != nil {
				fail(err)
				return
			}
			// The item whose existence proves the end: the last one streamed, or the
			// cursor of an empty stream.
			check := last
			if check == "" {
				check = after
			}
			if check == "" {
				return // an empty stream from the start: the list is empty
			}
			if ended, err := l.endedAt(ctx, check, b); err != nil {
				fail(err)
				return
			} else if ended {
				return
			}
			// Resume after the nearest earlier item that exists. Looking further back
			// than a few items costs more fetches than a stream from the start.
			after = ""
			pos, known := seen[check]
			for i := pos - 1; known && i >= 0 && i >= pos-4; i-- {
				ok, err := l.exists(ctx, order[i])
				if err != nil {
					fail(fmt.Errorf("%s: resuming the list: %w", l.op, err))
					return
				}
				if ok {
					after = order[i]
					break
				}
			}
		}
	}
}

// isJSONPage reports a first line that is not a stream's event but a JSON page: an object
// with items and no type, or, when the answer says it is JSON, not an event at all
// (an indented page starts with a lone brace).
func isJSONPage(line []byte, mediaType string) bool {
	var ev object
	if err := json.Unmarshal(line, &ev); err == nil {
		_, items := ev["items"]
		_, typ := ev["type"]
		return items && !typ
	}
	return mediaType == "application/json" && len(line) > 0 && line[0] == '{'
}

// minStreamItemTime is the time a stream may take per item, beyond twice the request
// timeout: --timeout bounds the wait for each line, and this bounds the whole answer,
// so a server trickling bytes just fast enough to keep each line alive cannot stretch
// a listing without limit. The platform streams thousands of items a second.
const minStreamItemTime = 50 * time.Millisecond

// streamAllowance is how long a stream that has sent items items may have taken.
func (c *Client) streamAllowance(items int) time.Duration {
	return 2*c.timeout + time.Duration(items)*minStreamItemTime
}

// streamOnce reads one JSONL answer listing the items after the cursor after, and
// hands every item to emit. It returns the id of the last item streamed (a repeat
// included), "" if none. The decoding is by hand because the answer is a sequence of
// typed events, not one document. When the stream fails midway the GET is repeated;
// emit skips the items already yielded.
func (l *lister[T]) streamOnce(ctx context.Context, q url.Values, after string, b *listBudget, emit func(T) bool) (string, error) {
	q = maps.Clone(q)
	if after != "" {
		q.Set("cursor", after)
	}
	su := *l.u
	su.RawQuery = q.Encode()
	// No item for this long ends the stream, keep-alives or not; the platform sends
	// one after about 17 s without an item.
	idle := 2 * l.c.timeout
	var last string
	err := l.c.do(ctx, &request{op: l.op, kind: kindRead, url: &su, accept: "application/jsonl", handle: func(resp *http.Response, wd *watchdog) error {
		last = ""
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		// No preallocated buffer: the scanner starts small and grows to the longest line.
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, maxLineSize)
		start := time.Now()
		itemAt := start
		var items int
		var consumer time.Duration // time spent by the consumer, not the server
		for n := 1; sc.Scan(); n++ {
			wd.kick()
			if err := b.add(0, int64(len(sc.Bytes())+1)); err != nil {
				return permanent(err)
			}
			line := bytes.Trim(sc.Bytes(), jsonSpace)
			isItem := false
			err := func() error {
				if len(line) == 0 {
					return nil
				}
				// The event's keys are matched exactly, as in decodeObject.
				var ev object
				var typ string
				if err := json.Unmarshal(line, &ev); err != nil {
					return malformed(l.op, "line %d: %v", n, err)
				}
				if raw, ok := ev["type"]; ok {
					if err := json.Unmarshal(raw, &typ); err != nil {
						return malformed(l.op, "line %d: type: %v", n, err)
					}
				}
				switch typ {
				case "nop":
				case "error":
					var eb struct {
						Message any `json:"message"`
						Code    any `json:"code"`
					}
					_, _ = ev.member(l.op, "data", &eb)
					return &APIError{Op: l.op, Status: http.StatusOK, Code: stringish(eb.Code), Message: stringish(eb.Message)}
				case "item":
					var it T
					raw, ok := ev["data"]
					if !ok {
						return malformed(l.op, "line %d: item without data", n)
					}
					if err := json.Unmarshal(raw, &it); err != nil {
						return malformed(l.op, "line %d: %v", n, err)
					}
					key := l.id(it)
					if key == "" {
						return malformed(l.op, "line %d: item has no id", n)
					}
					isItem = true
					if err := b.add(1, 0); err != nil {
						return permanent(err)
					}
					last = key
					items++
					wd.pause() // the consumer may be slow; the server is not to blame
					t0 := time.Now()
					more := emit(it)
					consumer += time.Since(t0)
					wd.kick()
					if !more {
						return errStop
					}
				default:
					return malformed(l.op, "line %d: unknown event type %q", n, typ)
				}
				return nil
			}()
			if err != nil {
				if n == 1 && isJSONPage(line, mt) {
					// A proxy or an older server answered a JSON page: repeating cannot
					// change that, and a page is not the list.
					return permanent(malformed(l.op, "asked for a JSONL stream (Accept: application/jsonl) and the server answered a JSON page (Content-Type %q); use --listing paged", mt))
				}
				return err
			}
			if isItem {
				itemAt = time.Now()
				if d := itemAt.Sub(start) - consumer; d > l.c.streamAllowance(items) {
					return permanent(fmt.Errorf("%s: %w: the stream sent %d items in %s, slower than cbk-sync waits for (%s per item beyond twice --timeout): the server or a proxy is trickling it",
						l.op, ErrListBound, items, d.Round(time.Millisecond), minStreamItemTime))
				}
				continue
			}
			if d := time.Since(itemAt); d > idle {
				return permanent(fmt.Errorf("%s: %w: the stream sent no item for %s, only keep-alives", l.op, ErrListBound, d.Round(time.Millisecond)))
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return malformed(l.op, "a line is longer than %d bytes", maxLineSize)
			}
			return fmt.Errorf("%s: reading the stream: %w", l.op, err)
		}
		return nil
	}})
	if errors.Is(err, errStop) {
		err = nil
	}
	return last, err
}
