// Package emulator serves the ChatBotKit Partner API from memory, the way
// docs/partner-api.md describes it — traps included — for tests, demos and benchmarks.
//
// It checks the bearer token, serves one path family (or both, on request), paginates, answers nulls,
// omits description from a user fetch, refuses duplicate emails with 409, merges meta
// on "$update", cascades user deletes to tokens and shows a token secret only once. It
// can persist its state to a JSON file, inject faults (latency, 5xx, 429, quota, lost
// answers, error bodies after a 200, a concurrent writer deleting page ends) from a
// seeded RNG, and counts calls per operation
// so that tests and benchmarks can assert exact call numbers.
//
// The platform's traps it reproduces by default (docs/partner-api.md): on update, a
// top-level meta key whose first character is not a word character is dropped, and
// meta keys starting with "#" are hidden on read at any depth; limits are stored as
// sent, unknown keys at any depth included, and only the known ones are validated
// (whole numbers 0 or more); the alias is write-only (never in a list or fetch answer),
// unique (409 CONFLICT), checked against ^[a-z0-9_-]*$ (at most 128 characters, else
// 400), cleared by every update that leaves it out, and fetch, update and delete accept
// "@alias" in place of the user id (token routes take ids only). Also, as the platform:
// an unknown body field is a 400; a 409 has one body, CONFLICT "Unique constraint
// violation", for a duplicate email and a duplicate alias alike; emails are checked
// with the platform's syntax (state.EmailProblem); null is refused for a known limit or
// limits section (400, the whole update with it) and fails a token's name or
// description (500: non-null columns); "$update" merges meta on update only (a create
// stores it as a key); "#" keys are hidden in limits too; take=0 means 100; a JSONL
// stream starts with no keep-alive and stops after take items when take is given.
//
// Where the platform's behaviour is not documented the emulator chooses, and says so:
//   - A key set to null inside meta "$update" is stored with a null value.
//   - An empty alias is stored as null (no "@" lookup could find it).
//   - A list cursor naming an item deleted since selects nothing: the page is empty, as
//     on the platform (Prisma's cursor + skip 1), also inside a JSONL stream, which
//     pages internally. A cursor that never existed is a 400 (the platform answers it
//     like a deleted one; the emulator is stricter, to catch client bugs).
//   - An empty page has no "cursor" key at all.
//   - A wrong method on a known path is 405 METHOD_NOT_ALLOWED; an unknown path is 404.
//   - Requests without a valid bearer token are answered 401 before routing and are
//     not counted; neither are unknown paths and wrong methods.
//   - With SaveOnWrite, a change that was made but could not be saved is answered
//     500 INTERNAL_SERVER_ERROR (the "server failed after acting" case).
//   - A lost answer is only injected into a POST that succeeded: one that fails
//     changed nothing, so it is answered normally.
//   - A user of another partner account (PutForeignUser) is in no listing and answers
//     403 NOT_AUTHORIZED on every route naming it (fetch, update, delete, token list,
//     create, update, delete), after the injected faults and before the body is read:
//     the platform finds the user, sees another parent, and refuses.
//   - The path family served is the hosted API's by default (/v1/partner/ and
//     /api/v1/partner/, where the official Node SDK sends); the self-hosted
//     /api/v1/user/ only with Paths user or both.
package emulator

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Options configure an Emulator.
type Options struct {
	// Token is the bearer secret every request must carry; required.
	Token string
	// StatePath is the JSON file the state is loaded from at New (when it exists) and
	// saved to; "" keeps the state in memory only.
	StatePath string
	// SaveOnWrite saves to StatePath after every successful mutating request;
	// otherwise the state is saved only by Save and Close.
	SaveOnWrite bool
	// Faults are injected into API requests (see SetFaults to change them later).
	Faults Faults
	// Now is the clock for createdAt/updatedAt; nil means time.Now.
	Now func() time.Time
	// StreamPageSize is the size of the pages a JSONL stream is read in internally
	// (each one query, with the previous one's last item as its cursor, so the cursor
	// trap can end a stream early); 0 means 100.
	StreamPageSize int
	// Paths is the path family served (see Paths); the zero value is PathsPartner.
	Paths Paths
	// MaxTombstones bounds the deleted ids remembered for their cursors (see addGone);
	// 0 means DefaultMaxTombstones.
	MaxTombstones int
}

// Paths says which path family the emulator serves. A deployment serves one: the
// hosted API /v1/partner/user/... (and /api/v1/partner/user/..., where the SDKs send
// it before stripping /api for api.chatbotkit.com), the self-hosted platform
// /api/v1/user/...; any other path is 404 NOT_FOUND, as on the platform.
type Paths string

// The path families the emulator can serve.
const (
	PathsPartner Paths = "partner" // the default: the hosted API, as the SDKs reach it
	PathsUser    Paths = "user"    // the self-hosted platform
	PathsBoth    Paths = "both"    // both families, for a test that wants either
)

// ParsePaths reads a family as the command line spells it.
func ParsePaths(s string) (Paths, error) {
	switch p := Paths(s); p {
	case "":
		return PathsPartner, nil
	case PathsPartner, PathsUser, PathsBoth:
		return p, nil
	}
	return "", fmt.Errorf("paths %q: want partner, user or both", s)
}

// Faults say which failures the emulator injects. Rates are fractions of requests in
// [0, 1]; the 5xx, 429, lost and bad-body rates share one random draw per request, so
// their sum should not exceed 1.
type Faults struct {
	Seed        int64         // seeds the fault RNG so a run can be repeated
	Latency     time.Duration // added to every API request, before acting
	AnswerDelay time.Duration // of writes that changed something: the wait between acting and answering
	Rate5xx     float64       // answered 500/502/503/504 without acting
	Rate429     float64       // answered 429 TOO_MANY_REQUESTS without acting
	RetryAfter  time.Duration // > 0: 429s carry Retry-After (whole seconds, rounded up)
	RateLost    float64       // of POSTs that succeed: the change is made, then the connection is dropped
	RateBadBody float64       // of GETs: a 200 whose body is a JSON-lines error, without acting
	UserQuota   int           // > 0: a user create beyond this many users gets 429 LIMITS_REACHED
	// LateCreates is how many token creates, the first ones, the server completes only
	// LateCommit after they arrive, whether or not the client is still waiting: a
	// client that timed out meanwhile looks the token up, does not find it yet, and
	// must not report it "not created" (see LateCommitted).
	LateCreates int
	LateCommit  time.Duration
	// PollLimit is the poll limit (see admitPoll): list requests per PollWindow,
	// account-wide. 0 means DefaultPollLimit; a negative value turns it off.
	PollLimit int
	// PollWindow is the poll limit's sliding window; 0 means DefaultPollWindow.
	PollWindow time.Duration

	// The concurrent writer: someone else deleting while cbk-sync lists. After
	// serving a non-empty page (a JSON page, or one internal page of a JSONL stream) it
	// may delete that page's last item, the cursor of the next page: on the platform
	// that ends the listing early, the worst case of a concurrent delete. A user is
	// deleted with its tokens. The deleted IDs are kept (see WriterDeletes).
	DeleteRate  float64 // fraction of pages of any list (users and tokens), drawn from its own RNG seeded by Seed
	DeleteEvery int     // > 0: also after every DeleteEvery-th page of the user list (deterministic)
	DeleteMax   int     // > 0: the writer stops after this many deletes
}

// The poll limit is on by default, as every trap is, at a value that the demo and the
// test suite never reach (the hosted value is unconfirmed; the platform makes it
// deployment configuration): a client that floods the list routes meets it exactly
// as on the platform. Tests and benchmarks that want it set it lower; runs that
// measure something else with many thousands of polls turn it off.
const (
	DefaultPollLimit  = 1000
	DefaultPollWindow = 60 * time.Second
)

// pollLimit returns the limit in force and its window; limit 0 means none.
func (f Faults) pollLimit() (int, time.Duration) {
	limit, window := f.PollLimit, f.PollWindow
	if limit == 0 {
		limit = DefaultPollLimit
	}
	if window <= 0 {
		window = DefaultPollWindow
	}
	return max(limit, 0), window
}

// The operation names used by Counts.
const (
	opUserList    = "user.list"
	opUserFetch   = "user.fetch"
	opUserCreate  = "user.create"
	opUserUpdate  = "user.update"
	opUserDelete  = "user.delete"
	opTokenList   = "token.list"
	opTokenCreate = "token.create"
	opTokenUpdate = "token.update"
	opTokenDelete = "token.delete"
)

var allOps = []string{opUserList, opUserFetch, opUserCreate, opUserUpdate, opUserDelete, opTokenList, opTokenCreate, opTokenUpdate, opTokenDelete}

// The fault kinds used by FaultCounts.
const (
	fault5xx     = "5xx"
	fault429     = "429"
	faultLost    = "lost"
	faultBadBody = "bad_body"
	faultQuota   = "quota"
	faultPoll    = "poll_limit"    // a poll refused by the poll limit (not a random fault)
	faultDelete  = "writer_delete" // a delete by the concurrent writer
)

var allFaults = []string{fault5xx, fault429, faultLost, faultBadBody, faultQuota, faultDelete, faultPoll}

// maxBody bounds a request body; the API's bodies are small.
const maxBody = 1 << 20

// Emulator is an in-memory Partner API. It is an http.Handler and is safe for
// concurrent use.
type Emulator struct {
	token       []byte
	statePath   string
	saveOnWrite bool
	now         func() time.Time
	paths       Paths

	mu        sync.Mutex      // guards the state below
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

	streamPage int

	faultMu sync.Mutex
	// The late token creates (Faults.LateCreates): how many were taken and finished.
	lateMu    sync.Mutex
	lateTaken int
	lateDoneN int
	lateCond  *sync.Cond
	faults    Faults
	rng       *rand.Rand
	// The concurrent writer's own RNG and counters, so that it does not shift the
	// draws of the other faults.
	writerRNG     *rand.Rand
	userPages     int      // user-list pages served since SetFaults
	writerDeletes []string // IDs the writer deleted since SetFaults, in order

	pollMu  sync.Mutex
	pollNow func() time.Time // the poll limit's clock; tests replace it
	pollLog []time.Time      // admitted polls still in the window, oldest first
	polls   int64            // admitted polls since ResetCounts

	countMu     sync.Mutex
	calls       map[string]int64
	faultCounts map[string]int64

	persister // the state file and its journal (persist.go)
}

// New returns an emulator, loading opts.StatePath when that file exists.
func New(opts Options) (*Emulator, error) {
	if opts.Token == "" {
		return nil, errors.New("emulator: a bearer token is required")
	}
	paths, err := ParsePaths(string(opts.Paths))
	if err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	e := &Emulator{
		token:       []byte(opts.Token),
		statePath:   opts.StatePath,
		saveOnWrite: opts.SaveOnWrite && opts.StatePath != "",
		now:         opts.Now,
		paths:       paths,
		users:       newOrdered[*user](),
		userByID:    map[string]*user{},
		byEmail:     map[string]string{},
		byAlias:     map[string]string{},
		tokens:      newOrdered[*token](),
		tokenByID:   map[string]*token{},
		tokenUser:   map[string]string{},
		gone:        map[string]int64{},
		streamPage:  orDefaultInt(opts.StreamPageSize, 100),
		foreign:     map[string]bool{},
		pollNow:     time.Now,
		maxGone:     orDefaultInt(opts.MaxTombstones, DefaultMaxTombstones),
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.SetFaults(opts.Faults)
	e.ResetCounts()
	if err := e.openState(); err != nil {
		return nil, err
	}
	return e, nil
}

// SetFaults replaces the injected faults, reseeds the fault RNG, and empties the
// poll limit's window (a new limit starts afresh).
func (e *Emulator) SetFaults(f Faults) {
	e.pollMu.Lock()
	e.pollLog = nil
	e.pollMu.Unlock()
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	e.faults = f
	e.rng = rand.New(rand.NewPCG(uint64(f.Seed), uint64(f.Seed)^0x9e3779b97f4a7c15))
	e.writerRNG = rand.New(rand.NewPCG(uint64(f.Seed)^0x5851f42d4c957f2d, uint64(f.Seed)))
	e.userPages = 0
	e.writerDeletes = nil
}

// WriterDeletes returns the IDs of the users and tokens the concurrent writer deleted
// since the last SetFaults (a user's tokens are not listed separately), oldest first.
func (e *Emulator) WriterDeletes() []string {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	return append([]string(nil), e.writerDeletes...)
}

func orDefaultInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Counts returns the number of calls per operation, counting every authenticated
// request that reached an operation, faulted ones included.
func (e *Emulator) Counts() map[string]int64 {
	e.countMu.Lock()
	defer e.countMu.Unlock()
	out := make(map[string]int64, len(e.calls))
	for k, v := range e.calls {
		out[k] = v
	}
	return out
}

// FaultCounts returns the number of injected faults by kind.
func (e *Emulator) FaultCounts() map[string]int64 {
	e.countMu.Lock()
	defer e.countMu.Unlock()
	out := make(map[string]int64, len(e.faultCounts))
	for k, v := range e.faultCounts {
		out[k] = v
	}
	return out
}

// ResetCounts sets every call and fault count to zero.
func (e *Emulator) ResetCounts() {
	e.pollMu.Lock()
	e.polls = 0 // the window itself is the account's, and stays
	e.pollMu.Unlock()
	e.countMu.Lock()
	defer e.countMu.Unlock()
	e.calls = make(map[string]int64, len(allOps))
	for _, op := range allOps {
		e.calls[op] = 0
	}
	e.faultCounts = make(map[string]int64, len(allFaults))
	for _, f := range allFaults {
		e.faultCounts[f] = 0
	}
}

func (e *Emulator) countCall(op string) {
	e.countMu.Lock()
	e.calls[op]++
	e.countMu.Unlock()
}

func (e *Emulator) countFault(kind string) {
	e.countMu.Lock()
	e.faultCounts[kind]++
	e.countMu.Unlock()
}

func (e *Emulator) nowMilli() int64 { return e.now().UnixMilli() }

// Users returns a snapshot of every user, oldest first, with every field (description
// included).
func (e *Emulator) Users() []state.User {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]state.User, 0, e.users.len())
	for _, u := range e.users.all("") {
		c := u.User
		c.Meta = cloneMeta(c.Meta)
		c.Limits = cloneLimits(c.Limits)
		out = append(out, c)
	}
	return out
}

// Tokens returns a snapshot of a user's tokens, oldest first (never their secrets).
// An unknown user has none.
func (e *Emulator) Tokens(userID string) []state.Token {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.tokens.all(userID)
	if len(ts) == 0 {
		return nil
	}
	out := make([]state.Token, 0, len(ts))
	for _, t := range ts {
		c := t.Token
		c.Meta = cloneMeta(c.Meta)
		out = append(out, c)
	}
	return out
}

// PutUser stores a user directly, for seeding tests and benchmarks. It assigns ID,
// CreatedAt and UpdatedAt when they are empty and validates like a create (email
// format, duplicate email, meta keys, negative limits). Faults and quota do not apply.
func (e *Emulator) PutUser(u state.User) (state.User, error) {
	email, aerr := normaliseEmail(u.Email)
	if aerr != nil {
		return state.User{}, aerr
	}
	meta, aerr := validateMetaValue(u.Meta)
	if aerr != nil {
		return state.User{}, aerr
	}
	limits, aerr := validateLimitsValue(u.Limits)
	if aerr != nil {
		return state.User{}, aerr
	}
	rec := &user{User: state.User{
		ID: u.ID, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		Email: orNull(email), Name: orNull(u.Name), Description: orNull(u.Description),
		Image: orNull(u.Image), Meta: meta, Limits: limits,
	}, Alias: state.Null[string]()}

	e.mu.Lock()
	defer e.mu.Unlock()
	if aerr := e.stampSeeded(&rec.ID, &rec.CreatedAt, &rec.UpdatedAt); aerr != nil {
		return state.User{}, aerr
	}
	if aerr := e.checkEmailFree(rec.Email, ""); aerr != nil {
		return state.User{}, aerr
	}
	e.insertUser(rec)
	out := rec.User
	out.Meta = cloneMeta(out.Meta)
	out.Limits = cloneLimits(out.Limits)
	return out, nil
}

// stampSeeded gives a seeded record the ID and timestamps it lacks (UpdatedAt defaults
// to CreatedAt) and refuses an ID already in use; the caller holds e.mu.
func (e *Emulator) stampSeeded(id *string, createdAt, updatedAt *int64) *apiError {
	if *createdAt == 0 {
		*createdAt = e.nowMilli()
	}
	if *updatedAt == 0 {
		*updatedAt = *createdAt
	}
	if *id == "" {
		*id = e.newID(*createdAt)
		return nil
	}
	if e.idTaken(*id) {
		return &apiError{status: http.StatusConflict, code: "CONFLICT", msg: "id " + *id + " already exists"}
	}
	return nil
}

// PutToken stores a token of an existing user directly, for seeding. It assigns ID and
// CreatedAt when empty (give CreatedAt to make an old token); UpdatedAt defaults to
// CreatedAt. No secret exists for a seeded token.
func (e *Emulator) PutToken(userID string, t state.Token) (state.Token, error) {
	meta, aerr := validateMetaValue(t.Meta)
	if aerr != nil {
		return state.Token{}, aerr
	}
	rec := &token{Token: state.Token{
		ID: t.ID, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		Name: orNull(t.Name), Description: orNull(t.Description), Meta: meta,
	}, Config: state.Null[json.RawMessage]()}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.userByID[userID] == nil {
		return state.Token{}, errNotFound("user %s not found", userID)
	}
	if aerr := e.stampSeeded(&rec.ID, &rec.CreatedAt, &rec.UpdatedAt); aerr != nil {
		return state.Token{}, aerr
	}
	e.insertToken(userID, rec)
	out := rec.Token
	out.Meta = cloneMeta(out.Meta)
	return out, nil
}

func (e *Emulator) idTaken(id string) bool {
	_, u := e.userByID[id]
	_, t := e.tokenByID[id]
	_, g := e.gone[id]
	return u || t || g || e.foreign[id]
}

// PutForeignUser makes id a user of another partner account, for tests: it is in no
// listing, and fetch, update, delete and every token route of it answer 403
// NOT_AUTHORIZED, as the platform answers for a user whose parent is another account
// (a missing user is 404). Its id can be used by no other object.
func (e *Emulator) PutForeignUser(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id == "" || e.idTaken(id) {
		return fmt.Errorf("emulator: id %q is empty or already in use", id)
	}
	e.putForeign(id)
	return nil
}

// errForeign is the answer for a user of another partner account.
func errForeign() *apiError {
	return &apiError{status: http.StatusForbidden, code: "NOT_AUTHORIZED", msg: "not authorized to access this user"}
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

// Alias returns the alias of a user, which the API never shows, for tests and for
// `emu dump`; "" when it has none or does not exist.
func (e *Emulator) Alias(userID string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u := e.userByID[userID]; u != nil {
		return u.Alias.Value()
	}
	return ""
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
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		e.serveControl(w, r)
		return
	}
	path, ok := e.partnerPath(r.URL.Path)
	if !ok {
		writeError(w, errNotFound("no such endpoint"))
		return
	}
	rt, aerr := route(r.Method, path)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	e.countCall(rt.op)

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
	if (rt.op == opUserList || rt.op == opTokenList) && !e.admitPoll(f) {
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
	if rt.op == opUserList || rt.op == opTokenList {
		if acceptsJSONL(r) {
			e.streamList(w, r, rt)
			return
		}
	}
	if rt.op == opTokenCreate && e.takeLate(f) {
		// The server goes on although the client may be gone: no r.Context() here.
		time.Sleep(f.LateCommit)
		defer e.lateDone()
	}
	ans, changed, aerr := e.handle(rt, r.URL.Query(), body, f)
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

func (e *Emulator) isForeign(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.foreign[id]
}

// admitPoll counts a poll (a list request: one JSON page or one whole JSONL stream)
// against the poll limit, as the platform does: a sliding log of the polls admitted
// in the trailing window, account-wide; over the limit the poll is refused and, like
// every refused request, not counted. The platform raises it inside the list handler,
// so its 429 carries no X-Failure-Code and no Retry-After.
func (e *Emulator) admitPoll(f Faults) bool {
	limit, window := f.pollLimit()
	e.pollMu.Lock()
	now := e.pollNow()
	defer e.pollMu.Unlock()
	cut := now.Add(-window)
	i := 0
	for i < len(e.pollLog) && !e.pollLog[i].After(cut) {
		i++
	}
	e.pollLog = e.pollLog[i:]
	if limit > 0 && len(e.pollLog) >= limit {
		return false
	}
	if limit > 0 {
		e.pollLog = append(e.pollLog, now)
	}
	e.polls++
	return true
}

// PollCounts returns the polls admitted since ResetCounts and those refused by the
// poll limit.
func (e *Emulator) PollCounts() (admitted, rejected int64) {
	e.pollMu.Lock()
	admitted = e.polls
	e.pollMu.Unlock()
	return admitted, e.FaultCounts()[faultPoll]
}

func (e *Emulator) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(scheme):])), e.token) == 1
}

func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_emulator/counts":
		if r.Method != http.MethodGet {
			writeError(w, methodNotAllowed(http.MethodGet))
			return
		}
		admitted, rejected := e.PollCounts()
		e.faultMu.Lock()
		limit, window := e.faults.pollLimit()
		e.faultMu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"calls": e.Counts(), "faults": e.FaultCounts(),
			"polls": map[string]any{"admitted": admitted, "rejected": rejected, "limit": limit, "window_ms": window.Milliseconds()}})
	case "/_emulator/reset-counts":
		if r.Method != http.MethodPost {
			writeError(w, methodNotAllowed(http.MethodPost))
			return
		}
		e.ResetCounts()
		writeJSON(w, http.StatusOK, map[string]any{})
	default:
		writeError(w, errNotFound("no such emulator endpoint"))
	}
}

// partnerPath maps a path of a served family to its /v1/partner/ form, which route
// reads; it reports false for a path no served family has.
func (e *Emulator) partnerPath(path string) (string, bool) {
	if e.paths != PathsUser && (strings.HasPrefix(path, "/v1/partner/") || strings.HasPrefix(path, "/api/v1/partner/")) {
		return path, true
	}
	if e.paths != PathsPartner {
		if rest, ok := strings.CutPrefix(path, "/api/v1/user/"); ok {
			return "/v1/partner/user/" + rest, true
		}
	}
	return "", false
}

// routed is a request matched to an operation.
type routed struct {
	op      string
	userID  string
	tokenID string
}

func methodNotAllowed(allow string) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, code: "METHOD_NOT_ALLOWED",
		msg: "use " + allow, header: http.Header{"Allow": {allow}}}
}

// route maps a method and path to one of the nine operations.
func route(method, path string) (routed, *apiError) {
	rest, ok := strings.CutPrefix(path, "/api/v1/partner/")
	if !ok {
		rest, ok = strings.CutPrefix(path, "/v1/partner/")
	}
	if !ok {
		return routed{}, errNotFound("no such endpoint")
	}
	seg := strings.Split(rest, "/")
	for _, s := range seg {
		if s == "" {
			return routed{}, errNotFound("no such endpoint")
		}
	}
	var rt routed
	switch {
	case len(seg) == 2 && seg[0] == "user" && seg[1] == "list":
		rt.op = opUserList
	case len(seg) == 2 && seg[0] == "user" && seg[1] == "create":
		rt.op = opUserCreate
	case len(seg) == 3 && seg[0] == "user":
		rt.userID = seg[1]
		switch seg[2] {
		case "fetch":
			rt.op = opUserFetch
		case "update":
			rt.op = opUserUpdate
		case "delete":
			rt.op = opUserDelete
		}
	case len(seg) == 4 && seg[0] == "user" && seg[2] == "token":
		rt.userID = seg[1]
		switch seg[3] {
		case "list":
			rt.op = opTokenList
		case "create":
			rt.op = opTokenCreate
		}
	case len(seg) == 5 && seg[0] == "user" && seg[2] == "token":
		rt.userID, rt.tokenID = seg[1], seg[3]
		switch seg[4] {
		case "update":
			rt.op = opTokenUpdate
		case "delete":
			rt.op = opTokenDelete
		}
	}
	if rt.op == "" {
		return routed{}, errNotFound("no such endpoint")
	}
	want := http.MethodPost
	if rt.op == opUserList || rt.op == opUserFetch || rt.op == opTokenList {
		want = http.MethodGet
	}
	if method != want {
		return routed{}, methodNotAllowed(want)
	}
	return rt, nil
}

func acceptsJSONL(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/jsonl") {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"message":"encoding the answer failed","code":"INTERNAL_SERVER_ERROR"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	for k, vs := range e.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeJSON(w, e.status, errorBody{Message: e.msg, Code: e.code})
}

// errorBody is the Partner API's error answer.
type errorBody struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

// userAnswer is a User as the API answers it: every field present, unset ones null,
// except description, which a fetch leaves out.
type userAnswer struct {
	ID          string                  `json:"id"`
	CreatedAt   int64                   `json:"createdAt"`
	UpdatedAt   int64                   `json:"updatedAt"`
	Name        state.Opt[string]       `json:"name"`
	Description state.Opt[string]       `json:"description,omitzero"`
	Meta        state.Opt[state.Meta]   `json:"meta"`
	Image       state.Opt[string]       `json:"image"`
	Email       state.Opt[string]       `json:"email"`
	Limits      state.Opt[state.Limits] `json:"limits"`
}

func answerUser(u *user, withDescription bool) userAnswer {
	a := userAnswer{ID: u.ID, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, Name: u.Name,
		Meta: hideMeta(u.Meta), Image: u.Image, Email: u.Email, Limits: hideLimits(u.Limits)}
	if withDescription {
		a.Description = orNull(u.Description)
	}
	return a
}

// tokenAnswer is a Token as the API answers it (never the secret).
type tokenAnswer struct {
	ID          string                `json:"id"`
	CreatedAt   int64                 `json:"createdAt"`
	UpdatedAt   int64                 `json:"updatedAt"`
	Name        state.Opt[string]     `json:"name"`
	Description state.Opt[string]     `json:"description"`
	Meta        state.Opt[state.Meta] `json:"meta"`
}

func answerToken(t *token) tokenAnswer {
	return tokenAnswer{ID: t.ID, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Name: t.Name, Description: t.Description, Meta: hideMeta(t.Meta)}
}

// listAnswer is a page. Cursor is left out of an empty page.
type listAnswer struct {
	Items  []any  `json:"items"`
	Cursor string `json:"cursor,omitempty"`
}

type idAnswer struct {
	ID string `json:"id"`
}

type createdTokenAnswer struct {
	ID        string `json:"id"`
	Token     string `json:"token"`
	CreatedAt int64  `json:"createdAt"`
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
		if path, ok := strings.CutPrefix(k, "meta."); ok && path != "" && len(vs) > 0 {
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
	page := e.tokens.page(rt.userID, lq.asc, after, take, nil)
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

// concurrentWriter is the concurrent-writer fault: after a page whose last item is
// last was served, it may delete that item. The caller holds e.mu.
func (e *Emulator) concurrentWriter(rt routed, last string) {
	e.faultMu.Lock()
	f := e.faults
	del := false
	if rt.op == opUserList {
		e.userPages++
		del = f.DeleteEvery > 0 && e.userPages%f.DeleteEvery == 0
	}
	if f.DeleteRate > 0 && e.writerRNG.Float64() < f.DeleteRate {
		del = true
	}
	if f.DeleteMax > 0 && len(e.writerDeletes) >= f.DeleteMax {
		del = false
	}
	if del {
		e.writerDeletes = append(e.writerDeletes, last)
	}
	e.faultMu.Unlock()
	if !del {
		return
	}
	if rt.op == opUserList {
		if u := e.userByID[last]; u != nil {
			e.deleteUser(u)
		}
	} else if t := e.tokenByID[last]; t != nil && e.tokenUser[last] == rt.userID {
		e.deleteToken(rt.userID, t)
	}
	e.countFault(faultDelete)
}

// handle performs one operation. It reports whether the state changed.
func (e *Emulator) handle(rt routed, q map[string][]string, body []byte, f Faults) (any, bool, *apiError) {
	switch rt.op {
	case opUserList, opTokenList:
		lq, aerr := parseListQuery(q)
		if aerr != nil {
			return nil, false, aerr
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		items, cursor, aerr := e.listItems(rt, lq)
		if aerr != nil {
			return nil, false, aerr
		}
		if len(items) > 0 {
			e.concurrentWriter(rt, cursor)
		}
		return listAnswer{Items: items, Cursor: cursor}, false, nil

	case opUserFetch:
		e.mu.Lock()
		defer e.mu.Unlock()
		u := e.userRef(rt.userID)
		if u == nil {
			return nil, false, errNotFound("user %s not found", rt.userID)
		}
		// The platform's fetch does not select description: the key is missing.
		return answerUser(u, false), false, nil

	case opUserCreate:
		p, aerr := parseUserPatch(body, false)
		if aerr != nil {
			return nil, false, aerr
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if aerr := e.checkEmailFree(p.Email, ""); aerr != nil {
			return nil, false, aerr
		}
		if aerr := e.checkAliasFree(p.Alias, ""); aerr != nil {
			return nil, false, aerr
		}
		if f.UserQuota > 0 && e.users.len() >= f.UserQuota {
			e.countFault(faultQuota)
			return nil, false, &apiError{status: http.StatusTooManyRequests, code: "LIMITS_REACHED",
				msg: "You have exceeded your allocated account limits: users", header: http.Header{"X-Failure-Code": {"LIMITS_REACHED"}}}
		}
		now := e.nowMilli()
		u := &user{User: state.User{CreatedAt: now, UpdatedAt: now,
			Email: state.Null[string](), Name: state.Null[string](), Description: state.Null[string](),
			Image: state.Null[string](), Meta: state.Null[state.Meta](), Limits: state.Null[state.Limits]()},
			Alias: state.Null[string]()}
		u.ID = e.newID(now)
		applyUserPatch(u, p)
		e.insertUser(u)
		return idAnswer{u.ID}, true, nil

	case opUserUpdate:
		p, aerr := parseUserPatch(body, true)
		if aerr != nil {
			return nil, false, aerr
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		u := e.userRef(rt.userID)
		if u == nil {
			return nil, false, errNotFound("user %s not found", rt.userID)
		}
		if aerr := e.checkEmailFree(p.Email, u.ID); aerr != nil {
			return nil, false, aerr
		}
		if aerr := e.checkAliasFree(p.Alias, u.ID); aerr != nil {
			return nil, false, aerr
		}
		if p.Alias.Absent() {
			// TRAP: the platform's schema gives alias a default of null, so an update
			// that leaves it out clears it.
			p.Alias = state.Null[string]()
		}
		// A new record: stored ones never change (replaceUser moves the indexes).
		nu := *u
		applyUserPatch(&nu, p)
		nu.UpdatedAt = max(e.nowMilli(), u.CreatedAt)
		e.replaceUser(&nu)
		return idAnswer{u.ID}, true, nil

	case opUserDelete:
		if _, aerr := parseObject(body); aerr != nil {
			return nil, false, aerr
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		u := e.userRef(rt.userID)
		if u == nil {
			return nil, false, errNotFound("user %s not found", rt.userID)
		}
		e.deleteUser(u)
		return idAnswer{u.ID}, true, nil

	case opTokenCreate:
		p, aerr := parseTokenPatch(body, false)
		if aerr != nil {
			return nil, false, aerr
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.userByID[rt.userID] == nil {
			return nil, false, errNotFound("user %s not found", rt.userID)
		}
		now := e.nowMilli()
		// Name and description are non-null columns whose default is "".
		t := &token{Token: state.Token{CreatedAt: now, UpdatedAt: now,
			Name: state.Some(""), Description: state.Some(""), Meta: state.Null[state.Meta]()},
			Config: state.Null[json.RawMessage]()}
		t.ID = e.newID(now)
		applyTokenPatch(t, p)
		e.insertToken(rt.userID, t)
		// The secret exists only in this answer: nothing of it is stored.
		return createdTokenAnswer{ID: t.ID, Token: newSecret(), CreatedAt: t.CreatedAt}, true, nil

	case opTokenUpdate, opTokenDelete:
		var p tokenPatch
		var aerr *apiError
		if rt.op == opTokenUpdate {
			p, aerr = parseTokenPatch(body, true)
		} else {
			_, aerr = parseObject(body)
		}
		if aerr != nil {
			return nil, false, aerr
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.userByID[rt.userID] == nil {
			return nil, false, errNotFound("user %s not found", rt.userID)
		}
		t := e.tokenByID[rt.tokenID]
		if t == nil || e.tokenUser[rt.tokenID] != rt.userID {
			return nil, false, errNotFound("token %s not found", rt.tokenID)
		}
		if rt.op == opTokenDelete {
			e.deleteToken(rt.userID, t)
			return idAnswer{t.ID}, true, nil
		}
		nt := *t
		applyTokenPatch(&nt, p)
		nt.UpdatedAt = max(e.nowMilli(), t.CreatedAt)
		e.replaceToken(rt.userID, &nt)
		return idAnswer{t.ID}, true, nil
	}
	return nil, false, errNotFound("no such endpoint")
}

func applyUserPatch(u *user, p userPatch) {
	set := func(dst *state.Opt[string], v state.Opt[string]) {
		if v.Present() {
			*dst = v
		}
	}
	set(&u.Email, p.Email)
	set(&u.Name, p.Name)
	set(&u.Description, p.Description)
	set(&u.Image, p.Image)
	set(&u.Alias, p.Alias)
	if p.Meta.present() {
		u.Meta = p.Meta.apply(u.Meta)
	}
	if p.Limits.Present() {
		u.Limits = p.Limits // replaced as a whole
	}
}

func applyTokenPatch(t *token, p tokenPatch) {
	if p.Name.Present() {
		t.Name = p.Name
	}
	if p.Description.Present() {
		t.Description = p.Description
	}
	if p.Meta.present() {
		t.Meta = p.Meta.apply(t.Meta)
	}
	if p.Config.Present() {
		t.Config = p.Config
	}
}

// Listen serves e on addr with a real HTTP server. It returns the base URL (like
// "http://127.0.0.1:8787") and a function that shuts the server down gracefully.
func Listen(addr string, e *Emulator) (string, func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed after Shutdown
	}()
	stop := func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		<-done
		return err
	}
	return "http://" + ln.Addr().String(), stop, nil
}
