package emulator

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The listings, users and a user's tokens: JSON pages and JSONL streams, their query
// (order, take, cursor, filters) and the cursor trap.

// list answers a JSON page of a listing, users or a user's tokens; with Accept:
// application/jsonl the route streams instead (streamList).
func (e *Emulator) list(req request) (any, bool, *apiError) {
	lq, aerr := parseListQuery(req.query)
	if aerr != nil {
		return nil, false, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	items, cursor, aerr := e.listItems(req.routed, lq)
	if aerr != nil {
		return nil, false, aerr
	}
	if len(items) > 0 {
		e.concurrentWriter(req.routed, cursor)
	}
	return listAnswer{Items: items, Cursor: cursor}, false, nil
}

// listQuery is the parsed query of a list call.
type listQuery struct {
	asc    bool
	take   int
	cursor string
	email  string
	meta   [][2]string
}

func parseListQuery(q map[string][]string) (listQuery, *apiError) {
	lq := listQuery{take: 100}
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	switch o := get("order"); o {
	case "", "desc":
	case "asc":
		lq.asc = true
	default:
		return lq, errBadRequest("order must be asc or desc, got %q", o)
	}
	if t := get("take"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		var ne *strconv.NumError
		switch {
		case err == nil:
		case errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange):
			n = 100
			if strings.HasPrefix(t, "-") {
				n = 1
			}
		default:
			return lq, errBadRequest("take must be a number, got %q", t)
		}
		if n == 0 {
			n = 100 // the platform reads take=0 as no take: the default
		}
		lq.take = int(min(max(n, 1), 100))
	}
	lq.cursor = get("cursor")
	lq.email = get("email")
	for k, vs := range q {
		if path, ok := metaFilterPath(k); ok && len(vs) > 0 {
			lq.meta = append(lq.meta, [2]string{path, vs[0]})
		}
	}
	return lq, nil
}

// cursorKey finds the sort key of a cursor id, a live item of the list. A cursor whose
// item was deleted selects nothing (gone is true), as on the platform, where Prisma's
// cursor query finds no row to start from.
func (e *Emulator) cursorKey(id string, live func(string) (indexKey, bool)) (after *indexKey, gone bool, aerr *apiError) {
	if id == "" {
		return nil, false, nil
	}
	if k, ok := live(id); ok {
		return &k, false, nil
	}
	if _, ok := e.gone[id]; ok {
		return nil, true, nil
	}
	return nil, false, errBadRequest("unknown cursor %q", id)
}

// listItems returns the items of one page of a list and the page's cursor. The caller
// holds e.mu.
func (e *Emulator) listItems(rt routed, lq listQuery) ([]any, string, *apiError) {
	take := lq.take
	if rt.op == opUserList {
		after, gone, aerr := e.cursorKey(lq.cursor, func(id string) (indexKey, bool) {
			u := e.userByID[id]
			if u == nil {
				return indexKey{}, false
			}
			return userKey(u), true
		})
		if aerr != nil || gone {
			return []any{}, "", aerr
		}
		keep := func(u *user) bool {
			if lq.email != "" && state.EmailKey(u.Email.Value()) != state.EmailKey(lq.email) {
				return false
			}
			for _, f := range lq.meta {
				if !metaMatches(u.Meta, f[0], f[1]) {
					return false
				}
			}
			return true
		}
		page := e.users.page("", lq.asc, after, take, keep)
		items := make([]any, len(page))
		for i, u := range page {
			items[i] = answerUser(u, true)
		}
		if len(page) == 0 {
			return items, "", nil
		}
		return items, page[len(page)-1].ID, nil
	}

	if e.userByID[rt.userID] == nil {
		return nil, "", errNotFound("user %s not found", rt.userID)
	}
	after, gone, aerr := e.cursorKey(lq.cursor, func(id string) (indexKey, bool) {
		t := e.tokenByID[id]
		if t == nil || e.tokenUser[id] != rt.userID {
			return indexKey{}, false
		}
		return tokenKey(rt.userID, t), true
	})
	if aerr != nil || gone {
		return []any{}, "", aerr
	}
	var keep func(*token) bool
	if len(lq.meta) > 0 {
		// Token lists take the meta filter too (not email).
		keep = func(t *token) bool {
			for _, f := range lq.meta {
				if !metaMatches(t.Meta, f[0], f[1]) {
					return false
				}
			}
			return true
		}
	}
	page := e.tokens.page(rt.userID, lq.asc, after, take, keep)
	items := make([]any, len(page))
	for i, t := range page {
		items[i] = answerToken(t)
	}
	if len(page) == 0 {
		return items, "", nil
	}
	return items, page[len(page)-1].ID, nil
}

// streamList answers a list call with Accept: application/jsonl: every item, one line
// each, with no leading keep-alive (the platform sends a nop only after ~16.7 s of
// silence), at most take items when the query gives take. Like the platform it reads the list in pages of
// StreamPageSize, each page one query under the lock that starts after the previous
// page's last item, and writes each page without the lock. So a page's last item
// deleted before the next page is read (by anyone, or by the concurrent writer)
// ends the stream early, exactly as a paged listing would: the trap is the same.
func (e *Emulator) streamList(w http.ResponseWriter, r *http.Request, rt routed) {
	lq, aerr := parseListQuery(r.URL.Query())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	// take caps the whole stream (the platform's stream handler honours it); without
	// it the stream runs to the end.
	left := -1
	if _, given := r.URL.Query()["take"]; given {
		left = lq.take
	}
	lq.take = e.streamPage
	started := false
	for {
		if left >= 0 && left < lq.take {
			lq.take = left
		}
		e.mu.Lock()
		items, cursor, aerr := e.listItems(rt, lq)
		var lines []byte
		if aerr == nil {
			// Encoded under the lock so that a page is one consistent snapshot; only
			// the writing, which a slow reader can stall, happens without it.
			for _, it := range items {
				b, err := json.Marshal(map[string]any{"type": "item", "data": it})
				if err != nil {
					aerr = &apiError{status: http.StatusInternalServerError, code: "INTERNAL_SERVER_ERROR", msg: "encoding an item failed"}
					break
				}
				lines = append(append(lines, b...), '\n')
			}
			if aerr == nil && len(items) > 0 {
				e.concurrentWriter(rt, cursor)
			}
		}
		e.mu.Unlock()
		if aerr != nil {
			if !started {
				writeError(w, aerr)
				return
			}
			// After the status: the error goes into the stream, as the platform does.
			b, _ := json.Marshal(map[string]any{"type": "error", "data": errorBody{Message: aerr.msg, Code: aerr.code}})
			_, _ = w.Write(append(b, '\n'))
			return
		}
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/jsonl")
			w.WriteHeader(http.StatusOK)
		}
		if _, err := w.Write(lines); err != nil {
			return
		}
		if left >= 0 {
			left -= len(items)
		}
		if len(items) < lq.take || left == 0 {
			return
		}
		lq.cursor = cursor
	}
}
