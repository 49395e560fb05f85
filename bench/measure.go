package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/lease"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The operations as the emulator counts them (the same names as the client's).
const (
	opUserList    = client.OpUserList
	opUserFetch   = client.OpUserFetch
	opUserCreate  = client.OpUserCreate
	opUserUpdate  = client.OpUserUpdate
	opUserDelete  = client.OpUserDelete
	opTokenList   = client.OpTokenList
	opTokenCreate = client.OpTokenCreate
	opTokenUpdate = client.OpTokenUpdate
	opTokenDelete = client.OpTokenDelete
)

var allOps = []string{opUserList, opUserFetch, opUserCreate, opUserUpdate, opUserDelete,
	opTokenList, opTokenCreate, opTokenUpdate, opTokenDelete}

var readOps = []string{opUserList, opUserFetch, opTokenList}

// What a run measures.
const (
	opPlan = "plan" // ReadActual + plan.Compute
	opSync = "sync" // the same, then apply.Run
)

const apiToken = "bench-secret"

// pollRun says whether a run meets a poll limit: limit polls per window on the
// emulator, and the budget the client is given (0: learned). The zero value is a run
// without a poll limit.
type pollRun struct {
	limit  int
	window time.Duration
	budget int
}

func (p pollRun) on() bool { return p.limit > 0 }

// label names the run's poll limit for the progress and the table ("" for none).
func (p pollRun) label() string {
	if !p.on() {
		return ""
	}
	how := "learned"
	if p.budget > 0 {
		how = "given"
	}
	return fmt.Sprintf(" poll limit %d/%s, budget %s", p.limit, p.window, how)
}

// short is the suffix of the run's name in the table: "/given", "/learned" or "".
func (p pollRun) short() string {
	switch {
	case !p.on():
		return ""
	case p.budget > 0:
		return "/given"
	}
	return "/learned"
}

// run is one measured operation at one parallelism, on a fresh emulator.
type run struct {
	Op          string
	Parallelism int
	Baseline    bool // the naive way: one connection, one user at a time
	Poll        pollRun
	// Polls are the list requests the emulator admitted, PollRejections those its
	// poll limit refused, PollWait the client's time waiting for the window;
	// PollBound the read's lower bound under the limit (ReadBound includes it).
	Polls, MinPolls, PollRejections int64
	PollWait, PollBound             time.Duration
	PollBudget                      int // the budget the client ended with

	Wall      time.Duration // the whole operation
	ReadWall  time.Duration // ReadActual + Compute
	WriteWall time.Duration // apply.Run (sync only)

	ReadBound, WriteBound time.Duration // lower bounds of the two phases
	Calls                 map[string]int64
	Reads, MinReads       int64
	Writes, Planned       int64 // write calls made, and planned (a token create counts 2, a rotation 3)
	Chain                 int   // the longest per-user sequence of planned write calls
	Retries               int64
	Renewals              int64         // the lock's renewals (user updates), a sync's only
	CallP50, CallP99      time.Duration // one request, until its answer's headers
	CallMax               time.Duration
	HeapBefore            uint64 // live heap at the start (emulator state, config, scenario)
	PeakHeap              uint64 // peak of live+unswept heap objects (≈ HeapAlloc), sampled
	Allocated             uint64 // bytes allocated during the run

	Summary  plan.Summary
	Failures []string // call counts or outcomes that differ from what is expected
}

// Bound is the lower bound of the whole run.
func (r *run) Bound() time.Duration { return r.ReadBound + r.WriteBound }

// Ratio is measured wall time over its lower bound.
func (r *run) Ratio() float64 { return ratio(r.Wall, r.Bound()) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func (r *run) failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// env is a fresh emulator seeded with the scenario, served over real HTTP on loopback,
// and a client of it.
type env struct {
	emu  *emulator.Emulator
	api  *client.Client
	url  string
	stop func(context.Context) error
}

func startEnv(sc *scenario, latency time.Duration, parallelism int, log *slog.Logger, poll pollRun, paged bool) (*env, error) {
	// Without a poll limit asked for, the emulator's default one is off: those runs
	// measure the latency bound, and a 5,000-user plan is 5,000 polls.
	f := emulator.Faults{Latency: latency, PollLimit: -1}
	if poll.on() {
		f.PollLimit, f.PollWindow = poll.limit, poll.window
	}
	emu, err := emulator.New(emulator.Options{Token: apiToken, Faults: f})
	if err != nil {
		return nil, err
	}
	if err := sc.seed(emu); err != nil {
		return nil, err
	}
	url, stop, err := emulator.Listen("127.0.0.1:0", emu)
	if err != nil {
		return nil, fmt.Errorf("starting the emulator: %w", err)
	}
	api, err := newBenchClient(url, parallelism, log, poll, paged)
	if err != nil {
		_ = stop(context.Background())
		return nil, err
	}
	return &env{emu: emu, api: api, url: url, stop: stop}, nil
}

// newBenchClient is a client of the emulator at url, as cbk-sync makes one: P
// connections, the poll budget given or learned, one stream or pages.
func newBenchClient(url string, parallelism int, log *slog.Logger, poll pollRun, paged bool) (*client.Client, error) {
	return client.New(client.Options{BaseURL: url, Token: state.Secret(apiToken), MaxConns: parallelism, JSONL: !paged, Logger: log,
		PollBudget: poll.budget, PollWindow: poll.window})
}

func (e *env) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.stop(ctx)
}

// callTimes is a log handler that keeps the durations of the client's "api request"
// debug lines (from sending a request to its answer's headers), so that the report
// can say what one call really costs here, and show a stall (a slow dial, a starved
// process) that the totals hide.
type callTimes struct {
	mu sync.Mutex
	d  []time.Duration
}

func (h *callTimes) Enabled(_ context.Context, l slog.Level) bool { return l <= slog.LevelDebug }

func (h *callTimes) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "api request" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key != "duration" {
			return true
		}
		h.mu.Lock()
		h.d = append(h.d, a.Value.Duration())
		h.mu.Unlock()
		return false
	})
	return nil
}

func (h *callTimes) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *callTimes) WithGroup(string) slog.Handler      { return h }

// percentiles returns the median, the 99th percentile and the maximum.
func (h *callTimes) percentiles() (p50, p99, maxd time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.d) == 0 {
		return 0, 0, 0
	}
	d := slices.Clone(h.d)
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99), d[len(d)-1]
}

// countingSink is the secrets destination of the benchmark: it counts and discards.
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Deliver(apply.SecretRecord) error {
	s.n.Add(1)
	return nil
}

// measure runs op at parallelism p on a fresh emulator and checks its call counts.
// An error means the run could not be made; a run that made the wrong calls has
// Failures instead.
func measure(ctx context.Context, sc *scenario, d state.Desired, latency time.Duration, op string, p int, poll pollRun, paged bool) (*run, error) {
	calls := &callTimes{}
	e, err := startEnv(sc, latency, p, slog.New(calls), poll, paged)
	if err != nil {
		return nil, err
	}
	defer e.close()

	r := &run{Op: op, Parallelism: p, Baseline: p == 1, Poll: poll}
	sink := &countingSink{}
	opts := plan.DefaultOptions(sc.now)
	opts.ForceDeletes = true      // 5% orphans are far more than the default cap of 10
	opts.ForceTokenRevokes = true // and their tokens, with the revoked ones, pass the token cap

	runtime.GC() // start from the live heap, not the previous run's garbage
	e.emu.ResetCounts()
	mem := startMemSampler()
	r.HeapBefore = mem.start
	t0 := time.Now()
	var lk *lease.Lease
	lockAPI := &leaseAPI{API: e.api}
	var held time.Duration
	if op == opSync {
		// A sync takes the account's lock first, as cbk-sync sync does: a lookup and
		// a create before the plan, a delete after the apply, and a renewal every
		// TTL/3 in between.
		lk, ctx, err = lease.Acquire(ctx, lockAPI, lease.Options{Owner: d.Owner, TTL: sc.lockTTL})
		if err != nil {
			return nil, fmt.Errorf("%s P=%d: %w", op, p, err)
		}
	}
	pl, err := readAndPlan(ctx, e.api.ReadOnly(), d, opts)
	r.ReadWall = time.Since(t0)
	var rep *apply.Report
	if err == nil && op == opSync {
		t1 := time.Now()
		rep, err = apply.Run(ctx, e.api, &pl, apply.Options{Parallelism: p, Owner: d.Owner, Secrets: sink})
		if rerr := lk.Release(ctx); rerr != nil && err == nil {
			err = rerr
		}
		r.WriteWall = time.Since(t1)
		held = time.Since(t0)
	}
	r.Wall = time.Since(t0)
	r.PeakHeap, r.Allocated = mem.stop()
	if err != nil {
		return nil, fmt.Errorf("%s P=%d: %w", op, p, err)
	}

	r.Calls = e.emu.Counts()
	st := e.api.Stats()
	r.Retries = st.Retries
	r.Polls, r.PollRejections = e.emu.PollCounts()
	r.PollWait, r.PollBudget = st.PollWait, st.PollBudget
	r.CallP50, r.CallP99, r.CallMax = calls.percentiles()
	r.Summary = pl.Summary()
	for _, o := range readOps {
		r.Reads += r.Calls[o]
		r.MinReads += sc.minReads[o]
	}
	planned, total, chain := plannedWrites(&pl)
	r.Chain = chain
	for _, o := range allOps {
		if !slices.Contains(readOps, o) {
			r.Writes += r.Calls[o]
		}
	}
	want := map[string]int64{}
	for o, n := range sc.minReads {
		want[o] = n
	}
	if op == opSync {
		r.Planned = total
		for o, n := range planned {
			want[o] += n
		}
		// The lock: its lookup, its create and its delete; and the plan lists the
		// lease user too.
		pages, fetches := sc.userListReads(sc.users + 1)
		want[opUserList] += pages - sc.minReads[opUserList] + 1
		want[opUserFetch] += fetches - sc.minReads[opUserFetch]
		want[opUserCreate]++
		want[opUserDelete]++
		r.Renewals = lockAPI.renewals.Load()
		want[opUserUpdate] += r.Renewals
		checkRenewals(r, r.Renewals, held, sc.lockTTL)
	}
	r.MinPolls = want[opUserList] + want[opTokenList] // a sync's: with the lock's lookup

	// The lower bounds: the user listing is a chain of R calls (its pages or stream,
	// then the fetch that proves its end), the token lists T calls p at a time; the
	// writes W calls p at a time, but each user's in order.
	L := latency
	R, T := sc.minReads[opUserList]+sc.minReads[opUserFetch], sc.minReads[opTokenList]
	r.ReadBound = L * time.Duration(max(R, ceilDiv(T, int64(p))))
	if poll.on() && r.MinPolls > 0 {
		// Under the limit the polls go in k = ceil(polls/B) windows' worth: the last
		// cannot start before k-1 windows have passed, and then takes its own calls.
		B := int64(poll.limit)
		k := ceilDiv(r.MinPolls, B)
		last := r.MinPolls - (k-1)*B
		r.PollBound = poll.window*time.Duration(k-1) + L*time.Duration(ceilDiv(last, int64(p)))
		r.ReadBound = max(r.ReadBound, r.PollBound)
	}
	if op == opSync {
		// The lock's lookup and create come before the reads, its delete after the
		// writes: three calls in a row.
		r.ReadBound += 2 * L
		r.WriteBound = L * time.Duration(max(ceilDiv(total, int64(p)), int64(chain))+1)
	}

	// The checks CI relies on: exact calls, the plan the drift must give, and for a
	// sync a complete apply that left the remote state as declared.
	if r.Summary != sc.want {
		r.failf("the plan is %+v, want %+v", r.Summary, sc.want)
	}
	if !pl.Safety.Safe {
		r.failf("the plan is unsafe: %s", strings.Join(pl.Safety.Reasons, "; "))
	}
	if poll.on() {
		// Refused polls are calls the emulator counts but did not serve: the reads
		// that count are the polls it admitted.
		if r.Polls != r.MinPolls {
			r.failf("polls: %d admitted, want the minimum %d (user pages + token lists, and a sync's lock lookup)", r.Polls, r.MinPolls)
		}
		if poll.budget > 0 && r.PollRejections > 0 {
			r.failf("polls: %d rejected by the poll limit with the budget given, want 0", r.PollRejections)
		}
		if most := maxLearnedRejections(p, r.ReadWall, poll.window); poll.budget == 0 && r.PollRejections > most {
			r.failf(timingMiss+"polls: %d rejected while learning the budget, want at most P + 8 + windows passed = %d (those in flight at the first, then the probes: 8 in the next window, then one a window)", r.PollRejections, most)
		}
		got := maps.Clone(r.Calls)
		got[opUserList], got[opTokenList] = want[opUserList], want[opTokenList]
		r.Failures = append(r.Failures, compareCalls(got, want, op)...)
	} else {
		r.Failures = append(r.Failures, compareCalls(r.Calls, want, op)...)
	}
	if rep != nil {
		if rep.Failed() {
			r.failf("apply: %d ok, %d failed, %d skipped; first problem: %s", rep.Totals.OK, rep.Totals.Failed, rep.Totals.Skipped, firstProblem(rep))
		}
		if got, want := sink.n.Load(), int64(r.Summary.TokenCreate+r.Summary.TokenRotate); got != want {
			r.failf("secrets: %d delivered, want %d (one per created or rotated token)", got, want)
		}
		if problem := checkConverged(e.emu, sc); problem != "" {
			r.failf("after the sync the remote state is not as declared: %s", problem)
		}
	}
	return r, nil
}

// timingMiss starts the failures that depend on the machine's timing, not on what was
// sent: a ratio over its target, and the rejections of a learned budget (the probes go
// by the clock, so a stalled process meets more of them). The command fails on them;
// its Go tests, which run beside other packages' tests on a loaded machine, check
// everything else exactly and only report these (never timings asserted in tests).
const timingMiss = "timing: "

// maxLearnedRejections is the most rejections a run learning its budget meets alone
// (the client's pollScheduler): the polls in flight (at most P) when it first meets
// the limit, then its probes as the window slides: one an eighth of a window for
// one window, then one a window.
func maxLearnedRejections(p int, wall, window time.Duration) int64 {
	return int64(p) + 8 + int64(wall/window)
}

// compareCalls lists every operation whose call count differs from the expected one.
func compareCalls(got, want map[string]int64, op string) []string {
	var problems []string
	for _, o := range allOps {
		if got[o] != want[o] {
			problems = append(problems, fmt.Sprintf("%s: %d calls, want %d (%s)", o, got[o], want[o], why(o, op)))
		}
	}
	return problems
}

// why says where an expected call count comes from, for a failure message.
func why(o, op string) string {
	switch o {
	case opUserList:
		return "the user listing: one stream (paged: floor(users/100)+1 pages, the last one short or empty)"
	case opTokenList:
		return "one token list per existing declared user"
	case opUserFetch:
		return "one fetch proving the listing's end (the stream's last user, or an empty last page's cursor, still exists)"
	}
	if op == opPlan {
		return "a plan writes nothing"
	}
	return "one call per planned user or token change, two per token create (create, confirm), three per rotation (create, confirm, revoke)"
}

func firstProblem(rep *apply.Report) string {
	for _, res := range rep.Results {
		if res.Status != apply.StatusOK {
			return fmt.Sprintf("%s %s: %s", res.Action, res.Email, res.Error)
		}
	}
	return "none recorded"
}

// readAndPlan is what `cbk-sync plan` does: read what the plan says it reads (the
// users, the token lists of the declared users that manage tokens, the declared
// aliases), and compute the plan.
func readAndPlan(ctx context.Context, api *client.Client, d state.Desired, o plan.Options) (plan.Plan, error) {
	reads := plan.ToRead(d, nil)
	actual, err := api.ReadWithAliases(ctx, reads.Tokens, reads.Aliases)
	if err != nil {
		return plan.Plan{}, fmt.Errorf("reading the remote state: %w", err)
	}
	return plan.Compute(d, actual, o)
}

// plannedWrites counts the write calls a plan needs when nothing fails: per operation,
// in total, and along the longest single user's sequence.
func plannedWrites(p *plan.Plan) (map[string]int64, int64, int) {
	calls := map[string]int64{}
	var total int64
	chain := 0
	for _, up := range p.Users {
		n := 0
		for _, c := range up.Changes {
			var ops []string
			switch c.Action {
			case plan.UserCreate:
				ops = []string{opUserCreate}
			case plan.UserUpdate, plan.UserAdopt:
				ops = []string{opUserUpdate}
			case plan.UserDelete:
				ops = []string{opUserDelete}
			case plan.TokenCreate:
				// created pending, then confirmed once its secret is delivered
				ops = []string{opTokenCreate, opTokenUpdate}
			case plan.TokenUpdate, plan.TokenAdopt:
				ops = []string{opTokenUpdate}
			case plan.TokenRevoke:
				ops = []string{opTokenDelete}
			case plan.TokenRotate:
				ops = []string{opTokenCreate, opTokenUpdate, opTokenDelete}
			}
			for _, o := range ops {
				calls[o]++
			}
			n += len(ops)
		}
		total += int64(n)
		chain = max(chain, n)
	}
	return calls, total, chain
}

// checkConverged compares the emulator's state with the scenario's declaration: the
// declared users, no orphans, the declared names, k tokens each, none due to rotate.
func checkConverged(e *emulator.Emulator, sc *scenario) string {
	users := e.Users()
	if want := len(sc.remote) - sc.orphans + sc.created; len(users) != want {
		return fmt.Sprintf("%d users, want %d", len(users), want)
	}
	dueBefore := sc.now.Add(-rotateAfter).UnixMilli()
	for _, u := range users {
		if strings.HasSuffix(u.Name.Value(), "(old)") {
			return fmt.Sprintf("user %s still has its old name", u.Email.Value())
		}
		ts := e.Tokens(u.ID)
		if len(ts) != sc.tokensPerUser-declaredMissing(sc, u.Email.Value()) {
			return fmt.Sprintf("user %s has %d tokens", u.Email.Value(), len(ts))
		}
		for _, t := range ts {
			if t.CreatedAt < dueBefore {
				return fmt.Sprintf("token %s of %s was not rotated", t.Name.Value(), u.Email.Value())
			}
		}
	}
	return ""
}

// declaredMissing is the number of a user's remote tokens that the configuration
// leaves out (and the sync revokes).
func declaredMissing(sc *scenario, email string) int {
	return sc.revokedOf[email]
}

// timerLatency is how long a timer of d actually takes here, on average: the
// emulator's latency is such a timer, so this is the floor of every call, which the
// bounds (computed with d) do not include.
func timerLatency(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	const n = 10
	t0 := time.Now()
	for range n {
		t := time.NewTimer(d)
		<-t.C
	}
	return time.Since(t0) / n
}

func ceilDiv(a, b int64) int64 {
	if b <= 0 {
		return a
	}
	return (a + b - 1) / b
}

// memSampler records the peak heap during a run. It reads runtime/metrics, which
// does not stop the world, so sampling does not slow what it measures.
type memSampler struct {
	quit   chan struct{}
	done   chan struct{}
	start  uint64 // the heap when sampling started
	peak   uint64
	alloc0 uint64
}

const (
	heapObjects = "/memory/classes/heap/objects:bytes" // live and unswept objects: ≈ HeapAlloc
	heapAllocs  = "/gc/heap/allocs:bytes"              // cumulative bytes allocated
)

func startMemSampler() *memSampler {
	m := &memSampler{quit: make(chan struct{}), done: make(chan struct{})}
	s := []metrics.Sample{{Name: heapObjects}, {Name: heapAllocs}}
	metrics.Read(s)
	m.start, m.alloc0 = s[0].Value.Uint64(), s[1].Value.Uint64()
	m.peak = m.start
	go func() {
		defer close(m.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		s := []metrics.Sample{{Name: heapObjects}}
		for {
			select {
			case <-m.quit:
				return
			case <-t.C:
				metrics.Read(s)
				m.peak = max(m.peak, s[0].Value.Uint64())
			}
		}
	}()
	return m
}

// stop ends the sampling and returns the peak heap and the bytes allocated since start.
func (m *memSampler) stop() (peak, allocated uint64) {
	close(m.quit)
	<-m.done
	s := []metrics.Sample{{Name: heapObjects}, {Name: heapAllocs}}
	metrics.Read(s)
	return max(m.peak, s[0].Value.Uint64()), s[1].Value.Uint64() - m.alloc0
}
