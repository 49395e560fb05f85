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
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Options configure an Emulator.
type Options struct {
	// Token is the bearer secret every request must carry; required.
	Token string
	// StatePath is the JSON file the state is loaded from at New (when it exists) and
	// saved to; "" keeps the state in memory only.
	StatePath string
	// SaveOnWrite makes every change durable before it is answered, appended to the
	// journal beside StatePath (persist.go); otherwise the state is saved only by Save
	// and Close.
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

// maxBody bounds a request body; the API's bodies are small.
const maxBody = 1 << 20

// Emulator is an in-memory Partner API. It is an http.Handler and is safe for
// concurrent use. Its parts each own their lock: the records (store.go), the
// injected faults (faults.go), the poll limit (polllimit.go), the call counts
// (counts.go) and the state file (persist.go); the routes are in router.go.
type Emulator struct {
	token       []byte
	statePath   string
	saveOnWrite bool
	now         func() time.Time
	paths       Paths
	mux         *http.ServeMux // the routes of the served path family (router.go)
	streamPage  int

	store      // the records and their indexes, under e.mu
	faultState // the injected faults, their RNGs and the concurrent writer's tally
	lateState  // the late token creates taken and finished
	pollState  // the poll limit's sliding window
	counter    // calls and faults counted per kind
	persister  // the state file and its journal (persist.go)
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
		streamPage:  orDefaultInt(opts.StreamPageSize, 100),
		store:       newStore(orDefaultInt(opts.MaxTombstones, DefaultMaxTombstones)),
		pollState:   pollState{pollNow: time.Now},
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.mux = e.newMux()
	e.SetFaults(opts.Faults)
	e.ResetCounts()
	if err := e.openState(); err != nil {
		return nil, err
	}
	return e, nil
}

func orDefaultInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func (e *Emulator) nowMilli() int64 { return e.now().UnixMilli() }

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
