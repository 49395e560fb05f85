package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Fingerprint returns a SHA-256 (hex) over a canonical encoding of every user and every
// token list in a. It does not depend on the order of users, tokens or map keys, and
// changes when any field of any object changes (updatedAt included), when an object
// appears or disappears, and when a token list is read or not.
//
// A plan's fingerprint is that of its Dependencies: a saved plan stays valid while the
// objects it changes are unchanged, whatever happens to the rest of the account.
//
// The alias lookups (a.Aliases) are left out on purpose, and `apply FILE` does not
// make them again (the saved plan keeps those of its users): an alias changes only by
// a write to a user (update, create, delete), which changes that user's updatedAt or
// the user set, so a plan saved before the alias of a user it changes was removed or
// moved is refused like any other stale plan. (An alias that names another user may
// have been freed since: the update then succeeds instead of meeting 409.)
func Fingerprint(a state.Actual) string {
	fp, _ := fingerprint(a)
	return fp
}

// Dependencies returns the part of a that p's changes were computed from: every
// existing user that p changes (updates, adopts, deletes, or whose tokens it changes)
// and the token lists of the users whose tokens it changes. Apply of a saved plan reads
// exactly these again (a user by fetch, which is not a poll).
func Dependencies(a state.Actual, p *Plan) state.Actual {
	users := map[string]bool{}
	tokens := map[string]bool{}
	for _, up := range p.Users {
		for _, c := range up.Changes {
			id := firstID(c.UserID, up.UserID)
			if id == "" {
				continue // a user this plan creates, and its tokens
			}
			users[id] = true
			// A release reads the user's token list to release its owned tokens: a
			// token marked since must be seen again.
			if c.Action.IsToken() || c.Action == UserRelease {
				tokens[id] = true
			}
		}
	}
	out := state.Actual{Users: []state.User{}, Tokens: map[string][]state.Token{}}
	for _, u := range a.Users {
		if users[u.ID] {
			out.Users = append(out.Users, u)
		}
	}
	for id := range tokens {
		if ts, ok := a.Tokens[id]; ok {
			out.Tokens[id] = ts
		}
	}
	return out
}

func firstID(ids ...string) string {
	for _, id := range ids {
		if id != "" {
			return id
		}
	}
	return ""
}

// TokenUserIDs returns the IDs of the users whose token lists were read, sorted.
func TokenUserIDs(a state.Actual) []string {
	ids := make([]string, 0, len(a.Tokens))
	for id := range a.Tokens {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

type tokenList struct {
	userID string
	tokens []state.Token
}

// fingerprint hashes the users sorted by ID and, concurrently, the token lists sorted
// by user ID (each sorted by token ID), and returns SHA-256 over both digests with the
// sorted token user IDs (TokenUserIDs) it needed anyway. The encoding is a compact
// binary one rather than JSON because this runs on every plan and must stay cheap at
// 100,000 users; every value is typed and length-prefixed, so it is unambiguous.
func fingerprint(a state.Actual) (string, []string) {
	type tokenPart struct {
		sum []byte
		ids []string
	}
	tokensDone := make(chan tokenPart, 1)
	go func() {
		sum, ids := tokenListsDigest(a.Tokens)
		tokensDone <- tokenPart{sum, ids}
	}()
	usersSum := usersDigest(a.Users)
	tp := <-tokensDone
	h := sha256.New()
	h.Write([]byte("cbk-sync fingerprint v2\x00"))
	h.Write(usersSum)
	h.Write(tp.sum)
	return hex.EncodeToString(h.Sum(nil)), tp.ids
}

func usersDigest(us []state.User) []byte {
	h := sha256.New()
	e := &canonEncoder{h: h}
	users := make([]int32, len(us))
	for i := range users {
		users[i] = int32(i)
	}
	slices.SortFunc(users, func(x, y int32) int {
		if c := strings.Compare(us[x].ID, us[y].ID); c != 0 {
			return c
		}
		// Equal IDs should not happen; order them by content to stay order-independent.
		return bytes.Compare(encodeUser(&us[x]), encodeUser(&us[y]))
	})
	e.uvarint(uint64(len(users)))
	for _, i := range users {
		e.user(&us[i])
		if len(e.buf) > 32<<10 {
			e.flush()
		}
	}
	e.flush()
	return h.Sum(nil)
}

func tokenListsDigest(m map[string][]state.Token) ([]byte, []string) {
	h := sha256.New()
	e := &canonEncoder{h: h}
	// Ranging over the map once and sorting the entries avoids a lookup per user,
	// which at 100,000 users costs more than the sort.
	lists := make([]tokenList, 0, len(m))
	for id, toks := range m {
		lists = append(lists, tokenList{id, toks})
	}
	slices.SortFunc(lists, func(x, y tokenList) int { return strings.Compare(x.userID, y.userID) })
	ids := make([]string, len(lists))
	e.uvarint(uint64(len(lists)))
	var order []int
	for li, l := range lists {
		ids[li] = l.userID
		toks := l.tokens
		e.str(l.userID)
		e.uvarint(uint64(len(toks)))
		order = order[:0]
		for i := range toks {
			order = append(order, i)
		}
		if !sort.SliceIsSorted(toks, func(x, y int) bool { return toks[x].ID < toks[y].ID }) {
			slices.SortFunc(order, func(x, y int) int {
				if c := strings.Compare(toks[x].ID, toks[y].ID); c != 0 {
					return c
				}
				return bytes.Compare(encodeToken(&toks[x]), encodeToken(&toks[y]))
			})
		}
		for _, i := range order {
			e.token(&toks[i])
		}
		if len(e.buf) > 32<<10 {
			e.flush()
		}
	}
	e.flush()
	return h.Sum(nil), ids
}

func encodeUser(u *state.User) []byte {
	e := &canonEncoder{}
	e.user(u)
	return e.buf
}

func encodeToken(t *state.Token) []byte {
	e := &canonEncoder{}
	e.token(t)
	return e.buf
}

// canonEncoder appends a canonical binary encoding to buf and hands it to h in chunks.
type canonEncoder struct {
	h     hash.Hash
	buf   []byte
	pairs []metaPair
}

type metaPair struct {
	k string
	v any
}

func (e *canonEncoder) flush() {
	if e.h != nil && len(e.buf) > 0 {
		e.h.Write(e.buf)
		e.buf = e.buf[:0]
	}
}

func (e *canonEncoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *canonEncoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }

func (e *canonEncoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// Opt kinds are written as one byte: absent, null, set.
const (
	optAbsent = 'a'
	optNull   = 'n'
	optSet    = 's'
)

func optKindByte[T any](o state.Opt[T]) byte {
	switch {
	case o.IsSet():
		return optSet
	case o.IsNull():
		return optNull
	}
	return optAbsent
}

func (e *canonEncoder) optStr(o state.Opt[string]) {
	e.buf = append(e.buf, optKindByte(o))
	if v, ok := o.Get(); ok {
		e.str(v)
	}
}

func (e *canonEncoder) optMeta(o state.Opt[state.Meta]) {
	e.buf = append(e.buf, optKindByte(o))
	if v, ok := o.Get(); ok {
		e.object(v)
	}
}

func (e *canonEncoder) object(m map[string]any) {
	e.uvarint(uint64(len(m)))
	// Pairs are collected in a scratch slice shared by nested objects (each works
	// above the previous length), so that a meta map costs no allocation and no
	// second lookup per key.
	base := len(e.pairs)
	for k, v := range m {
		e.pairs = append(e.pairs, metaPair{k, v})
	}
	n := len(e.pairs) - base
	slices.SortFunc(e.pairs[base:], func(x, y metaPair) int { return strings.Compare(x.k, y.k) })
	for i := range n {
		p := e.pairs[base+i]
		e.str(p.k)
		e.value(p.v)
	}
	e.pairs = e.pairs[:base]
}

func (e *canonEncoder) value(v any) {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, 'z')
	case bool:
		if x {
			e.buf = append(e.buf, 't')
		} else {
			e.buf = append(e.buf, 'f')
		}
	case float64:
		e.buf = append(e.buf, 'd')
		e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(x))
	case string:
		e.buf = append(e.buf, 's')
		e.str(x)
	case []any:
		e.buf = append(e.buf, 'l')
		e.uvarint(uint64(len(x)))
		for _, y := range x {
			e.value(y)
		}
	case map[string]any:
		e.buf = append(e.buf, 'm')
		e.object(x)
	case state.Meta:
		e.buf = append(e.buf, 'm')
		e.object(x)
	case state.Limits:
		e.buf = append(e.buf, 'm')
		e.object(x)
	default:
		// Not in encoding/json's decoded form (the reader normalises, so this is rare):
		// canonical JSON still identifies it.
		b, err := json.Marshal(x)
		if err != nil {
			b = []byte(err.Error())
		}
		e.buf = append(e.buf, 'j')
		e.str(string(b))
	}
}

func (e *canonEncoder) user(u *state.User) {
	e.buf = append(e.buf, 'U')
	e.str(u.ID)
	e.varint(u.CreatedAt)
	e.varint(u.UpdatedAt)
	e.optStr(u.Email)
	e.optStr(u.Name)
	e.optStr(u.Description)
	e.optStr(u.Image)
	e.optMeta(u.Meta)
	// The whole limits object, unknown keys at any depth included: an update sends
	// them back, so a change to any of them must make a saved plan stale.
	e.buf = append(e.buf, optKindByte(u.Limits))
	if l, ok := u.Limits.Get(); ok {
		e.object(l)
	}
}

func (e *canonEncoder) token(t *state.Token) {
	e.buf = append(e.buf, 'T')
	e.str(t.ID)
	e.varint(t.CreatedAt)
	e.varint(t.UpdatedAt)
	e.optStr(t.Name)
	e.optStr(t.Description)
	e.optMeta(t.Meta)
}
