// Command bench measures cbk-sync's plan and sync against the in-process emulator,
// served over real HTTP with a fixed latency per request, and checks that they make
// exactly the API calls the product promises: the fewest reads the API allows, and the
// writes each planned action costs: one per user change, token update or revoke, two
// per token create (create, then confirm once the secret is delivered), three per
// rotation (create, confirm, revoke the old).
//
//	go run ./bench [-users N] [-tokens K] [-latency L] [-parallelism 8,32] [-poll-limit B] [-poll-window W] [-shared-runs R] [-json FILE] [-seed S] [-check]
//
// Each run reports its wall time, its lower bound (what the latency makes unavoidable
// at that parallelism), the ratio of the two, and the speed-up over the naive plan
// (one request at a time). Then, with a poll limit of B polls per window W on the
// emulator, plan and sync with the budget given and plan with the budget learned, each
// against the poll bound W x (ceil(polls/B) - 1) + L x ceil(last window's polls/P);
// and R plans back to back under that one window, each learning its budget (shared.go).
// Timings are reported, never asserted, but for one: the command exits 1 when a call
// count or an outcome differs from what is expected (more polls than the minimum, a
// rejection with the budget given), which is how CI catches regressions, and when the
// back-to-back plans take more than 1.3x their window bound (issue 20).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/lease"
)

// checkLockTTL is -check's lock TTL: renewed every 200ms, so that even a run of a
// second renews it and its calls are counted (the default, 2 minutes, renews every
// 40 s, which only the full-size runs reach).
const checkLockTTL = 600 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a check failed, or the benchmark could not run
	exitUsage  = 2
)

// settings are the command line.
type settings struct {
	users, tokens int
	latency       time.Duration
	parallelism   []int
	seed          uint64
	syncBaseline  bool
	jsonPath      string
	paged         bool          // list users in pages instead of one JSONL stream (cbk-sync's default)
	pollLimit     int           // B of the poll-limit runs; 0: none
	pollWindow    time.Duration // W of the poll-limit runs
	lockTTL       time.Duration // the TTL of a sync's lock, renewed every TTL/3
	stateUsers    []int         // sizes of the emulator's own runs (emustate.go)
	stateDuration time.Duration // each phase of those runs
	markdownPath  string        // also write the tables as Markdown
	sharedRuns    int           // R plans back to back under one poll window; 0: none
	sharedUsers   int           // users each of them declares; 0: 30% of the poll limit
}

// Main runs the benchmark and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitUsage
	}
	rep, err := benchmark(ctx, s, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitFailed
	}
	rep.writeText(stdout)
	if s.jsonPath != "" {
		if err := rep.writeJSONFile(s.jsonPath); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitFailed
		}
	}
	if s.markdownPath != "" {
		if err := writeMarkdownFile(s.markdownPath, rep.jsonView()); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitFailed
		}
	}
	if failures := rep.failures(); len(failures) > 0 {
		fmt.Fprintf(stderr, "bench: FAILED: %d check(s) differ from what is expected:\n", len(failures))
		for _, f := range failures {
			fmt.Fprintln(stderr, "  "+f)
		}
		return exitFailed
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := settings{}
	fs.IntVar(&s.users, "users", 5000, "remote `N` users to seed")
	fs.IntVar(&s.tokens, "tokens", 2, "`K` tokens per user")
	fs.DurationVar(&s.latency, "latency", 20*time.Millisecond, "latency `L` the emulator adds to every request")
	par := fs.String("parallelism", "8,32", "comma-separated parallelisms `P` to measure (the P=1 baseline is always run)")
	fs.Uint64Var(&s.seed, "seed", 1, "seed `S` that picks which users and tokens drift")
	fs.BoolVar(&s.syncBaseline, "sync-baseline", false, "also run sync at P=1 (slow: every write one after the other)")
	fs.StringVar(&s.jsonPath, "json", "", "also write the results as JSON to `FILE`")
	listing := fs.String("listing", "jsonl", "how users are listed, as cbk-sync's --listing: `jsonl` (one stream) or paged")
	fs.IntVar(&s.pollLimit, "poll-limit", 500, "poll limit `B` per -poll-window of the poll-limit runs (0: no such runs)")
	fs.DurationVar(&s.pollWindow, "poll-window", 10*time.Second, "sliding window `W` of the poll limit")
	fs.IntVar(&s.sharedRuns, "shared-runs", 4, "`R` plans back to back under one poll window, each learning its budget (0: none)")
	fs.IntVar(&s.sharedUsers, "shared-users", 0, "users `U` each of the -shared-runs plans declares (0: 30% of -poll-limit)")
	fs.DurationVar(&s.lockTTL, "lock-ttl", lease.DefaultTTL, "TTL `D` of a sync's account lock, renewed every D/3 (one user update each, counted)")
	stateUsers := fs.String("state-users", "1000,10000,100000", "comma-separated `sizes` of the emulator's own runs, with and without its state file (\"\": none)")
	fs.DurationVar(&s.stateDuration, "state-duration", 3*time.Second, "length `D` of each phase of the emulator's own runs")
	fs.StringVar(&s.markdownPath, "markdown", "", "also write the tables as Markdown to `FILE` (for docs/performance.md)")
	check := fs.Bool("check", false, "CI size: -users 200 -latency 1ms -poll-limit 50 -poll-window 250ms -lock-ttl 600ms unless given")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench [flags]")
		fmt.Fprintln(stderr, "Measures plan and sync against the in-process emulator and checks their API calls.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *check {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["users"] {
			s.users = 200
		}
		if !set["latency"] {
			s.latency = time.Millisecond
		}
		if !set["poll-limit"] {
			s.pollLimit = 50
		}
		if !set["poll-window"] {
			s.pollWindow = 250 * time.Millisecond
		}
		if !set["lock-ttl"] {
			s.lockTTL = checkLockTTL
		}
		if !set["state-users"] {
			*stateUsers = "100,1000"
		}
		if !set["state-duration"] {
			s.stateDuration = 300 * time.Millisecond
		}
	}
	switch *listing {
	case "jsonl":
	case "paged":
		s.paged = true
	default:
		return s, fmt.Errorf("-listing %q: want jsonl or paged", *listing)
	}
	switch {
	case s.users < 0 || s.users > 90_000:
		return s, fmt.Errorf("-users %d: want 0..90000 (the config's limit is 100,000 users, new ones included)", s.users)
	case s.tokens < 0 || s.tokens > 1000:
		return s, fmt.Errorf("-tokens %d: want 0..1000", s.tokens)
	case s.latency < 0:
		return s, fmt.Errorf("-latency %s: want 0 or more", s.latency)
	case s.pollLimit < 0:
		return s, fmt.Errorf("-poll-limit %d: want 0 (no poll-limit runs) or more", s.pollLimit)
	case s.pollWindow <= 0:
		return s, fmt.Errorf("-poll-window %s: want more than 0", s.pollWindow)
	case s.sharedRuns < 0 || s.sharedRuns > 100:
		return s, fmt.Errorf("-shared-runs %d: want 0..100", s.sharedRuns)
	case s.sharedUsers < 0 || s.sharedUsers > 90_000:
		return s, fmt.Errorf("-shared-users %d: want 0 (30%% of -poll-limit) or up to 90000", s.sharedUsers)
	case s.lockTTL < 30*time.Millisecond:
		return s, fmt.Errorf("-lock-ttl %s: want 30ms or more", s.lockTTL)
	}
	for _, f := range strings.Split(*stateUsers, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 1_000_000 {
			return s, fmt.Errorf("-state-users %q: want a comma-separated list of sizes 1..1000000", *stateUsers)
		}
		s.stateUsers = append(s.stateUsers, n)
	}
	if s.stateDuration <= 0 {
		return s, fmt.Errorf("-state-duration %s: want more than 0", s.stateDuration)
	}
	seen := map[int]bool{1: true}
	for _, f := range strings.Split(*par, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 1024 {
			return s, fmt.Errorf("-parallelism %q: want a comma-separated list of numbers 1..1024", *par)
		}
		if !seen[p] {
			seen[p] = true
			s.parallelism = append(s.parallelism, p)
		}
	}
	return s, nil
}

// benchmark sets the scenario up and makes every run: the P=1 plan baseline first,
// then plan and sync at each parallelism.
func benchmark(ctx context.Context, s settings, progress io.Writer) (*report, error) {
	sc := newScenario(s.users, s.tokens, s.seed, time.Now())
	sc.setListing(s.paged)
	sc.lockTTL = s.lockTTL
	t0 := time.Now()
	d, err := config.LoadBytes("bench.yaml", sc.yaml, nil)
	if err != nil {
		return nil, fmt.Errorf("the generated configuration does not load: %w", err)
	}
	rep := &report{settings: s, scenario: sc, configUsers: len(d.Users), configLoad: time.Since(t0), configBytes: len(sc.yaml), started: t0}
	rep.timer = timerLatency(s.latency)

	type step struct {
		op   string
		p    int
		poll pollRun
	}
	steps := []step{{opPlan, 1, pollRun{}}}
	if s.syncBaseline {
		steps = append(steps, step{opSync, 1, pollRun{}})
	}
	for _, p := range s.parallelism {
		steps = append(steps, step{opPlan, p, pollRun{}}, step{opSync, p, pollRun{}})
	}
	if s.pollLimit > 0 {
		given := pollRun{limit: s.pollLimit, window: s.pollWindow, budget: s.pollLimit}
		learned := pollRun{limit: s.pollLimit, window: s.pollWindow}
		for _, p := range s.parallelism {
			steps = append(steps, step{opPlan, p, given}, step{opPlan, p, learned}, step{opSync, p, given})
		}
	}
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "bench: %s P=%d%s ...\n", st.op, st.p, st.poll.label())
		r, err := measure(ctx, sc, d, s.latency, st.op, st.p, st.poll, s.paged)
		if err != nil {
			return nil, err
		}
		rep.runs = append(rep.runs, r)
	}
	if s.pollLimit > 0 && s.sharedRuns > 0 {
		u := sharedUsers(s.sharedUsers, s.pollLimit)
		ssc := newScenario(u, s.tokens, s.seed, time.Now())
		ssc.setListing(s.paged)
		sd, err := config.LoadBytes("shared.yaml", ssc.yaml, nil)
		if err != nil {
			return nil, fmt.Errorf("the generated configuration of the shared-window plans does not load: %w", err)
		}
		for _, p := range s.parallelism {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			fmt.Fprintf(progress, "bench: %d plans of %d users back to back P=%d under one poll limit %d/%s ...\n", s.sharedRuns, u, p, s.pollLimit, s.pollWindow)
			r, err := measureShared(ctx, ssc, sd, s.latency, p, s.sharedRuns, s.pollLimit, s.pollWindow, s.paged)
			if err != nil {
				return nil, err
			}
			rep.shared = append(rep.shared, r)
		}
	}
	if len(s.stateUsers) > 0 {
		runs, err := measureStates(ctx, s.stateUsers, s.stateDuration, s.seed, progress)
		if err != nil {
			return nil, fmt.Errorf("the emulator at %v users: %w", s.stateUsers, err)
		}
		rep.stateRuns = runs
	}
	rep.duration = time.Since(t0)
	return rep, nil
}

// writeJSONFile writes the report as indented JSON.
func (rep *report) writeJSONFile(path string) error {
	b, err := json.MarshalIndent(rep.jsonView(), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("-json: %w", err)
	}
	return nil
}
