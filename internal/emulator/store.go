package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// store is the emulator's records and their indexes. Everything in it is guarded by
// mu, which every API operation takes for its reads and changes (never for I/O:
// snapshots are cloned under it and written outside, persist.go).
type store struct {
	mu        sync.Mutex
	users     *ordered[*user] // in list order (index.go)
	userByID  map[string]*user
	byEmail   map[string]string // state.EmailKey(email) -> user id
	byAlias   map[string]string // alias -> user id
	tokens    *ordered[*token]  // every user's, grouped by user id
	tokenByID map[string]*token
	tokenUser map[string]string // token id -> user id
	gone      map[string]int64  // deleted id -> createdAt: its cursor selects nothing (bounded: addGone)
	goneOrder []string          // the ids of gone, oldest delete first
	maxGone   int
	foreign   map[string]bool // ids of users of another partner account: 403 on every route
	seq       uint64          // id counter
	version   uint64          // bumped by every change, so saves never go backwards
}

func newStore(maxGone int) store {
	return store{
		users:     newOrdered[*user](),
		userByID:  map[string]*user{},
		byEmail:   map[string]string{},
		byAlias:   map[string]string{},
		tokens:    newOrdered[*token](),
		tokenByID: map[string]*token{},
		tokenUser: map[string]string{},
		gone:      map[string]int64{},
		foreign:   map[string]bool{},
		maxGone:   maxGone,
	}
}

// user is a stored partner user. Every Opt field of the embedded state.User is null or
// set, never absent: the store always knows every field.
type user struct {
	state.User
	Alias state.Opt[string] `json:"alias"`
}

// token is a stored API token. Its secret is not kept anywhere: the API shows it once.
type token struct {
	state.Token
	Config state.Opt[json.RawMessage] `json:"config"`
}

// newID returns an opaque, unique, CUID-like id: "c", the creation time and a counter in
// base 36 (so ids made in one millisecond still sort in creation order), then random.
func (e *Emulator) newID(createdAt int64) string {
	e.seq++
	ts := strconv.FormatInt(max(createdAt, 0), 36)
	ctr := strconv.FormatUint(e.seq%(36*36*36*36), 36)
	return "c" + leftPad(ts, 8) + leftPad(ctr, 4) + strings.ToLower(rand.Text()[:12])
}

func leftPad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat("0", n-len(s)) + s
}

// newSecret returns a token secret: "sk-" and 64 lowercase hex digits.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return "sk-" + hex.EncodeToString(b)
}

// userKey and tokenKey place records in their index: users in one group, each user's
// tokens in a group of their own.
func userKey(u *user) indexKey { return indexKey{createdAt: u.CreatedAt, id: u.ID} }

func tokenKey(userID string, t *token) indexKey {
	return indexKey{group: userID, createdAt: t.CreatedAt, id: t.ID}
}

// The store's changes. Each is made under e.mu and logged (logChange, persist.go):
// records are never changed in place once stored, an update stores a new one, so a
// clone of the indexes taken for a snapshot keeps the records as they were.

func (e *Emulator) insertUser(u *user) {
	e.users.put(userKey(u), u)
	e.userByID[u.ID] = u
	if email, ok := u.Email.Get(); ok {
		e.byEmail[state.EmailKey(email)] = u.ID
	}
	if alias, ok := u.Alias.Get(); ok {
		e.byAlias[alias] = u.ID
	}
	e.logChange(change{Op: recUser, User: u})
}

// replaceUser stores nu in place of the user with its id (and creation time), moving
// its email and alias in their indexes.
func (e *Emulator) replaceUser(nu *user) {
	old := e.userByID[nu.ID]
	if a, ok := old.Alias.Get(); ok && e.byAlias[a] == nu.ID {
		delete(e.byAlias, a)
	}
	if m, ok := old.Email.Get(); ok && e.byEmail[state.EmailKey(m)] == nu.ID {
		delete(e.byEmail, state.EmailKey(m))
	}
	if a, ok := nu.Alias.Get(); ok {
		e.byAlias[a] = nu.ID
	}
	if m, ok := nu.Email.Get(); ok {
		e.byEmail[state.EmailKey(m)] = nu.ID
	}
	e.users.put(userKey(nu), nu)
	e.userByID[nu.ID] = nu
	e.logChange(change{Op: recUser, User: nu})
}

func (e *Emulator) insertToken(userID string, t *token) {
	e.tokens.put(tokenKey(userID, t), t)
	e.tokenByID[t.ID] = t
	e.tokenUser[t.ID] = userID
	e.logChange(change{Op: recToken, Owner: userID, Token: t})
}

// replaceToken stores nt in place of the token of userID with its id.
func (e *Emulator) replaceToken(userID string, nt *token) {
	e.tokens.put(tokenKey(userID, nt), nt)
	e.tokenByID[nt.ID] = nt
	e.logChange(change{Op: recToken, Owner: userID, Token: nt})
}

// deleteUser deletes u and, as the platform does, its tokens.
func (e *Emulator) deleteUser(u *user) {
	if alias, ok := u.Alias.Get(); ok {
		delete(e.byAlias, alias)
	}
	for _, t := range e.tokens.all(u.ID) {
		e.tokens.remove(tokenKey(u.ID, t))
		delete(e.tokenByID, t.ID)
		delete(e.tokenUser, t.ID)
		e.addGone(t.ID, t.CreatedAt)
	}
	if email, ok := u.Email.Get(); ok {
		delete(e.byEmail, state.EmailKey(email))
	}
	e.users.remove(userKey(u))
	delete(e.userByID, u.ID)
	e.addGone(u.ID, u.CreatedAt)
	e.logChange(change{Op: recDeleteUser, ID: u.ID})
}

// deleteToken deletes a token of userID.
func (e *Emulator) deleteToken(userID string, t *token) {
	e.tokens.remove(tokenKey(userID, t))
	delete(e.tokenByID, t.ID)
	delete(e.tokenUser, t.ID)
	e.addGone(t.ID, t.CreatedAt)
	e.logChange(change{Op: recDeleteToken, ID: t.ID})
}

func (e *Emulator) putForeign(id string) {
	e.foreign[id] = true
	e.logChange(change{Op: recForeign, ID: id})
}

// DefaultMaxTombstones bounds the deleted ids the emulator remembers (Options).
const DefaultMaxTombstones = 10_000

// addGone remembers a deleted id, so that a cursor naming it selects nothing, as on
// the platform, and is not refused as one that never existed. They are bounded: past
// maxGone the oldest delete is forgotten, and a cursor naming it is then refused as
// unknown (400), like one that never existed. A listing holds its cursor for the
// seconds it pages, and 10,000 deletes later that listing is long over.
func (e *Emulator) addGone(id string, createdAt int64) {
	if _, ok := e.gone[id]; ok {
		return
	}
	e.gone[id] = createdAt
	e.goneOrder = append(e.goneOrder, id)
	for len(e.gone) > e.maxGone {
		delete(e.gone, e.goneOrder[0])
		e.goneOrder[0] = ""
		e.goneOrder = e.goneOrder[1:]
	}
}

func (e *Emulator) idTaken(id string) bool {
	_, u := e.userByID[id]
	_, t := e.tokenByID[id]
	_, g := e.gone[id]
	return u || t || g || e.foreign[id]
}

// userRef finds the user a fetch, update or delete path names: by id, or by alias as
// "@alias" (token routes take ids only, so they look users up by id). The caller
// holds e.mu.
func (e *Emulator) userRef(ref string) *user {
	if alias, ok := strings.CutPrefix(ref, "@"); ok {
		return e.userByID[e.byAlias[alias]]
	}
	return e.userByID[ref]
}

// checkAliasFree refuses an alias that another user (not self) already has.
func (e *Emulator) checkAliasFree(alias state.Opt[string], self string) *apiError {
	s, ok := alias.Get()
	if !ok {
		return nil
	}
	if other, taken := e.byAlias[s]; taken && other != self {
		return errUniqueViolation()
	}
	return nil
}

// checkEmailFree refuses an email that another user (not self) already has, compared
// case-insensitively.
func (e *Emulator) checkEmailFree(email state.Opt[string], self string) *apiError {
	s, ok := email.Get()
	if !ok {
		return nil
	}
	if other, taken := e.byEmail[state.EmailKey(s)]; taken && other != self {
		return errUniqueViolation()
	}
	return nil
}

func (e *Emulator) isForeign(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.foreign[id]
}
