package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// emuKey finds a script's emulator in testscript.Env.Values.
type emuKey struct{}

// emuHandle is the emulator a script talks to over HTTP: it runs in the test process,
// so the script can inject faults, read exact call counts and hold requests at a gate
// while the real cbk-sync binary runs as a separate process.
type emuHandle struct {
	emu      *emulator.Emulator
	gate     atomic.Pointer[gate]
	throttle atomic.Pointer[throttle]
	// served is signalled after every request, for wait-calls.
	mu     sync.Mutex
	served *sync.Cond
}

func newEmuHandle() *emuHandle {
	h := &emuHandle{}
	h.served = sync.NewCond(&h.mu)
	return h
}

// waitCalls blocks until op has been called at least n times (bounded by a minute
// against a hung test), woken by every request served rather than by a timer.
func (h *emuHandle) waitCalls(ts *testscript.TestScript, op string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	timedOut := false
	t := time.AfterFunc(time.Minute, func() {
		h.mu.Lock()
		timedOut = true
		h.mu.Unlock()
		h.served.Broadcast()
	})
	defer t.Stop()
	for h.emu.Counts()[op] < n {
		if timedOut {
			ts.Fatalf("emu wait-calls: %s reached %d calls, not %d, within a minute", op, h.emu.Counts()[op], n)
		}
		h.served.Wait()
	}
}

// gate holds every request to one operation path after the first n have passed, until
// opened; reached is closed when the first request is held. It lets a script
// interrupt an apply at a known point without sleeping.
type gate struct {
	suffix  string
	n       int
	mu      sync.Mutex
	seen    int
	held    chan struct{} // one send per request held, for gate-wait N
	reached chan struct{}
	open    chan struct{}
	once    sync.Once
}

func (g *gate) hold(r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, g.suffix) {
		return
	}
	g.mu.Lock()
	g.seen++
	held := g.seen > g.n
	g.mu.Unlock()
	if held {
		g.once.Do(func() { close(g.reached) })
		select {
		case g.held <- struct{}{}:
		default:
		}
		<-g.open
	}
}

// throttle answers one POST to a path, the one after the first n, with a 429
// TOO_MANY_REQUESTS whose Retry-After is retryAfter seconds; hit is closed then.
type throttle struct {
	suffix     string
	n          int
	retryAfter string
	mu         sync.Mutex
	seen       int
	hit        chan struct{}
}

func (t *throttle) answer(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, t.suffix) {
		return false
	}
	t.mu.Lock()
	t.seen++
	now := t.seen == t.n+1
	t.mu.Unlock()
	if !now {
		return false
	}
	w.Header().Set("Retry-After", t.retryAfter)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"message":"too many requests","code":"TOO_MANY_REQUESTS"}`))
	close(t.hit)
	return true
}

func (h *emuHandle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g := h.gate.Load(); g != nil {
		g.hold(r)
	}
	// After the gate: a throttle set while a request is held answers it when released.
	if t := h.throttle.Load(); t != nil && t.answer(w, r) {
		h.served.Broadcast()
		return
	}
	h.emu.ServeHTTP(w, r)
	h.served.Broadcast()
}

func faultFlags(fs *flag.FlagSet) *emulator.Faults {
	f := &emulator.Faults{}
	fs.Int64Var(&f.Seed, "seed", 1, "fault seed")
	fs.Float64Var(&f.Rate5xx, "fail", 0, "5xx rate")
	fs.Float64Var(&f.Rate429, "throttle", 0, "429 rate")
	fs.DurationVar(&f.RetryAfter, "retry-after", 0, "Retry-After on 429s")
	fs.Float64Var(&f.RateLost, "lost", 0, "lost-answer rate")
	fs.Float64Var(&f.RateBadBody, "bad-body", 0, "bad-body rate")
	fs.IntVar(&f.UserQuota, "quota", 0, "user quota")
	fs.IntVar(&f.PollLimit, "poll-limit", 0, "poll limit (0 = the emulator's default, -1 = none)")
	fs.DurationVar(&f.PollWindow, "poll-window", 0, "poll window (0 = the emulator's default)")
	fs.Float64Var(&f.DeleteRate, "delete-rate", 0, "concurrent writer: fraction of list pages whose last item is deleted")
	fs.IntVar(&f.DeleteEvery, "delete-every", 0, "concurrent writer: delete the last user of every N-th user page")
	fs.IntVar(&f.DeleteMax, "delete-max", 0, "concurrent writer: at most N deletes")
	return f
}

// cmdEmu implements the script command
//
//	emu start [-paths F] [fault flags] [STATE.json]   start an emulator, set CHATBOTKIT_API_URL/TOKEN
//	                                       (-stream-page N: the internal page size of streams)
//	emu faults [fault flags]               replace the faults
//	emu seed N OWNER [TOKEN...]            add users u000@acme.test.. owned by OWNER, each with
//	                                       the named tokens, owned too
//	emu writer-deletes N                   assert the concurrent writer deleted exactly N items
//	emu unique                             assert no email and no token name of a user twice
//	emu calls OP N                         assert OP was called exactly N times (OP total: all calls)
//	emu reset-calls                        zero the counters
//	emu dump                               print users and tokens (no secrets) to stdout
//	emu add FILE.json                      add {"users": [{...user, "tokens": [...]}]}
//	emu post PATH JSON                     POST JSON to the API path (another client's
//	                                       write, behind cbk-sync's back); must answer 200
//	emu gate PATH-SUFFIX N                 hold POSTs to PATH-SUFFIX after the first N
//	emu gate-wait [N]                      wait until a request (N requests) is held
//	emu gate-open                          release held requests
//	emu throttle PATH-SUFFIX N SECONDS     answer the POST to PATH-SUFFIX after the first N
//	                                       with a 429 whose Retry-After is SECONDS
//	emu throttle-wait                      wait until that 429 was sent
//	emu delivered FILE...                  assert the secret of every live token created by
//	                                       cbk-sync is in the JSON-lines sinks FILE... exactly once
//	emu wait-calls OP N                    wait until OP was called at least N times
//	emu delete EMAIL                       delete that user through the API, as another client would
func cmdEmu(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: emu start|faults|calls|reset-calls|seed|seed-app|dump|user|users|gate|gate-wait|gate-open")
	}
	slot := ts.Value(emuKey{}).(*emuHandle)
	if args[0] != "start" && slot.emu == nil {
		ts.Fatalf("emu %s: no emulator; run 'emu start' first", args[0])
	}
	switch args[0] {
	case "start":
		fs := flag.NewFlagSet("emu start", flag.ContinueOnError)
		faults := faultFlags(fs)
		streamPage := fs.Int("stream-page", 0, "internal page size of JSONL streams")
		paths := fs.String("paths", "partner", "path family served: partner, user or both")
		ts.Check(fs.Parse(args[1:]))
		statePath := ""
		if fs.NArg() > 0 {
			statePath = ts.MkAbs(fs.Arg(0))
		}
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		token := "sk-" + hex.EncodeToString(b)
		e, err := emulator.New(emulator.Options{Token: token, StatePath: statePath, Faults: *faults, Paths: emulator.Paths(*paths), StreamPageSize: *streamPage})
		ts.Check(err)
		slot.emu = e
		// Served through the handle (not emulator.Listen) so the gate sits in front.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		srv := &http.Server{Handler: slot}
		go func() { _ = srv.Serve(ln) }()
		ts.Setenv("CHATBOTKIT_API_URL", "http://"+ln.Addr().String())
		ts.Setenv("CHATBOTKIT_API_TOKEN", token)
		ts.Defer(func() {
			if g := slot.gate.Load(); g != nil {
				g.once.Do(func() { close(g.reached) })
				select {
				case <-g.open:
				default:
					close(g.open)
				}
			}
			_ = srv.Shutdown(context.Background())
		})
	case "faults":
		fs := flag.NewFlagSet("emu faults", flag.ContinueOnError)
		faults := faultFlags(fs)
		ts.Check(fs.Parse(args[1:]))
		slot.emu.SetFaults(*faults)
	case "calls":
		if len(args) != 3 {
			ts.Fatalf("usage: emu calls OP N")
		}
		want, err := strconv.ParseInt(args[2], 10, 64)
		ts.Check(err)
		counts := slot.emu.Counts()
		got := counts[args[1]]
		if args[1] == "total" {
			for _, n := range counts {
				got += n
			}
		}
		if (got == want) == neg {
			ts.Fatalf("emu calls %s: got %d, want %s%d", args[1], got, map[bool]string{true: "not ", false: ""}[neg], want)
		}
	case "reset-calls":
		slot.emu.ResetCounts()
	case "seed":
		if len(args) < 3 {
			ts.Fatalf("usage: emu seed N OWNER [TOKEN...]")
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		owned := state.Meta{state.OwnerKey: args[2]}
		for i := range n {
			u, err := slot.emu.PutUser(state.User{Email: state.Some(fmt.Sprintf("u%03d@acme.test", i)), Name: state.Some(fmt.Sprint("User ", i)), Meta: state.Some(owned)})
			ts.Check(err)
			for _, name := range args[3:] {
				_, err := slot.emu.PutToken(u.ID, state.Token{Name: state.Some(name), Meta: state.Some(owned)})
				ts.Check(err)
			}
		}
	case "seed-app":
		// Seeds users the way ChatBotKit's white-label template creates them: each
		// customer's sub-account made with create({name}), most without an email.
		if len(args) != 3 {
			ts.Fatalf("usage: emu seed-app N WITHOUT-EMAIL")
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		without, err := strconv.Atoi(args[2])
		ts.Check(err)
		for i := range n {
			u := state.User{Name: state.Some(fmt.Sprintf("Customer %03d", i))}
			if i >= without {
				u.Email = state.Some(fmt.Sprintf("customer%03d@app.test", i))
			}
			_, err := slot.emu.PutUser(u)
			ts.Check(err)
		}
	case "user":
		// Prints the dump line of one user, found by its ID, with the ID.
		if len(args) != 2 {
			ts.Fatalf("usage: emu user ID")
		}
		for _, u := range slot.emu.Users() {
			if u.ID == args[1] {
				fmt.Fprintf(ts.Stdout(), "user %s id=%s name=%q owner=%q meta=%s\n", u.Email.Value(), u.ID, u.Name.Value(), u.Owner(), jsonOf(u.Meta))
				return
			}
		}
		ts.Fatalf("emu user: no user %s", args[1])
	case "users":
		// Fails unless the account has exactly N users (the lock's included).
		if len(args) != 2 {
			ts.Fatalf("usage: emu users N")
		}
		want, err := strconv.Atoi(args[1])
		ts.Check(err)
		if got := len(slot.emu.Users()); (got == want) == neg {
			ts.Fatalf("emu users: got %d, want %s%d", got, map[bool]string{true: "not ", false: ""}[neg], want)
		}
	case "writer-deletes":
		if len(args) != 2 {
			ts.Fatalf("usage: emu writer-deletes N")
		}
		want, err := strconv.Atoi(args[1])
		ts.Check(err)
		if got := len(slot.emu.WriterDeletes()); (got == want) == neg {
			ts.Fatalf("emu writer-deletes: got %d, want %d", got, want)
		}
	case "unique":
		emails := map[string]bool{}
		for _, u := range slot.emu.Users() {
			key := state.EmailKey(u.Email.Value())
			if emails[key] && key != "" {
				ts.Fatalf("emu unique: two users with email %s", key)
			}
			emails[key] = true
			names := map[string]bool{}
			for _, t := range slot.emu.Tokens(u.ID) {
				if names[t.Name.Value()] {
					ts.Fatalf("emu unique: %s has two tokens named %s", key, t.Name.Value())
				}
				names[t.Name.Value()] = true
			}
		}
	case "dump":
		dumpEmulator(ts, slot.emu)
	case "post":
		if len(args) != 3 {
			ts.Fatalf("usage: emu post PATH JSON")
		}
		req := httptest.NewRequest(http.MethodPost, args[1], strings.NewReader(args[2]))
		req.Header.Set("Authorization", "Bearer "+ts.Getenv("CHATBOTKIT_API_TOKEN"))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		slot.emu.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			ts.Fatalf("emu post %s: %d %s", args[1], rec.Code, rec.Body.String())
		}
	case "add":
		if len(args) != 2 {
			ts.Fatalf("usage: emu add FILE.json")
		}
		addToEmulator(ts, slot.emu, ts.ReadFile(args[1]))
	case "gate":
		if len(args) != 3 {
			ts.Fatalf("usage: emu gate PATH-SUFFIX N")
		}
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		slot.gate.Store(&gate{suffix: args[1], n: n, held: make(chan struct{}, 64), reached: make(chan struct{}), open: make(chan struct{})})
	case "gate-wait":
		want := 1
		if len(args) == 2 {
			var err error
			want, err = strconv.Atoi(args[1])
			ts.Check(err)
		}
		timeout := time.After(time.Minute) // a bound against a hung test, not a synchronisation
		for range want {
			select {
			case <-slot.gate.Load().held:
			case <-timeout:
				ts.Fatalf("emu gate-wait: fewer than %d requests reached the gate within a minute", want)
			}
		}
	case "gate-open":
		close(slot.gate.Load().open)
	case "throttle":
		if len(args) != 4 {
			ts.Fatalf("usage: emu throttle PATH-SUFFIX N SECONDS")
		}
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		slot.throttle.Store(&throttle{suffix: args[1], n: n, retryAfter: args[3], hit: make(chan struct{})})
	case "delivered":
		checkDelivered(ts, slot.emu, args[1:])
	case "throttle-wait":
		select {
		case <-slot.throttle.Load().hit:
		case <-time.After(time.Minute): // a bound against a hung test, not a synchronisation
			ts.Fatalf("emu throttle-wait: no request was throttled within a minute")
		}
	case "delete":
		if len(args) != 2 {
			ts.Fatalf("usage: emu delete EMAIL")
		}
		deleteByEmail(ts, slot, args[1])
	case "wait-calls":
		if len(args) != 3 {
			ts.Fatalf("usage: emu wait-calls OP N")
		}
		n, err := strconv.ParseInt(args[2], 10, 64)
		ts.Check(err)
		slot.waitCalls(ts, args[1], n)
	default:
		ts.Fatalf("emu: unknown subcommand %q", args[0])
	}
}

// dumpEmulator prints one line per user and token, sorted by email and name, with the
// fields scripts assert on.
func dumpEmulator(ts *testscript.TestScript, e *emulator.Emulator) {
	users := e.Users()
	sort.Slice(users, func(i, j int) bool { return users[i].Email.Value() < users[j].Email.Value() })
	out := ts.Stdout()
	for _, u := range users {
		fmt.Fprintf(out, "user %s name=%q owner=%q meta=%s limits=%s alias=%q\n", u.Email.Value(), u.Name.Value(), u.Owner(), jsonOf(u.Meta), jsonOf(u.Limits), e.Alias(u.ID))
		toks := e.Tokens(u.ID)
		sort.Slice(toks, func(i, j int) bool { return toks[i].Name.Value() < toks[j].Name.Value() })
		for _, t := range toks {
			fmt.Fprintf(out, "  token %s desc=%q owner=%q\n", t.Name.Value(), t.Description.Value(), t.Owner())
		}
	}
}

// addToEmulator adds users and their tokens, as someone else writing to the account
// would (PutUser/PutToken: no faults, no call counted).
func addToEmulator(ts *testscript.TestScript, e *emulator.Emulator, data string) {
	var f struct {
		Users []struct {
			state.User
			Tokens []state.Token `json:"tokens"`
		} `json:"users"`
	}
	ts.Check(json.Unmarshal([]byte(data), &f))
	for _, fu := range f.Users {
		u, err := e.PutUser(fu.User)
		ts.Check(err)
		for _, t := range fu.Tokens {
			_, err := e.PutToken(u.ID, t)
			ts.Check(err)
		}
	}
}

func jsonOf[T any](o state.Opt[T]) string {
	b, err := o.MarshalJSON()
	if err != nil {
		return "!" + err.Error()
	}
	return string(b)
}

// deleteByEmail deletes a user through the emulator's API, past the gate, as another
// client would.
func deleteByEmail(ts *testscript.TestScript, h *emuHandle, email string) {
	for _, u := range h.emu.Users() {
		if u.Email.Value() != email {
			continue
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/partner/user/"+u.ID+"/delete", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+ts.Getenv("CHATBOTKIT_API_TOKEN"))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.emu.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			ts.Fatalf("emu delete %s: %d %s", email, rec.Code, rec.Body.String())
		}
		return
	}
	ts.Fatalf("emu delete: no user %s", email)
}

// checkDelivered fails unless the secret of every live token cbk-sync created (its meta
// has a nonce) is delivered exactly once
// across the JSON-lines sinks files (a missing file delivered nothing). A secret of a
// token revoked since may be there too: a holder's own create, revoked by the run that
// took its lease over because it was never confirmed, is not a duplicate.
func checkDelivered(ts *testscript.TestScript, e *emulator.Emulator, files []string) {
	seen := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(ts.MkAbs(f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		ts.Check(err)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var rec struct {
				TokenID string `json:"token_id"`
			}
			if line == "" {
				continue
			}
			ts.Check(json.Unmarshal([]byte(line), &rec))
			seen[rec.TokenID]++
		}
	}
	for _, u := range e.Users() {
		for _, t := range e.Tokens(u.ID) {
			if _, made := t.Meta.Value()[state.NonceKey]; !made {
				continue // not created by cbk-sync (seeded by the script)
			}
			if n := seen[t.ID]; n != 1 {
				ts.Fatalf("emu delivered: the secret of %s token %s (%s) was delivered %d times", u.Email.Value(), t.Name.Value(), t.ID, n)
			}
		}
	}
}
