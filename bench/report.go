package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/plan"
)

// The targets of the issue: a plan within 1.2× of its lower bound, and a speed-up over
// the naive plan of at least 0.8 × P. They are shown, not enforced: timings depend on
// the machine.
const (
	targetRatio   = 1.2
	targetSpeedUp = 0.8
	// targetPollRatio is issue 10's: under a poll limit, wall time within 1.15x of
	// the poll bound.
	targetPollRatio = 1.15
)

// report is every run of one benchmark.
type report struct {
	settings    settings
	scenario    *scenario
	configUsers int
	configBytes int
	configLoad  time.Duration
	timer       time.Duration // what a timer of the latency really takes here
	runs        []*run
	shared      []*sharedRun  // plans back to back under one poll window
	stateRuns   []*stateRun   // the emulator's own runs, memory then --state at each size
	duration    time.Duration // the whole benchmark
	started     time.Time
}

// baseline returns the P=1 run of op, or nil.
func (rep *report) baseline(op string) *run {
	for _, r := range rep.runs {
		if r.Op == op && r.Baseline && !r.Poll.on() {
			return r
		}
	}
	return nil
}

// speedUp is the baseline's wall time over r's, or 0 without a baseline.
func (rep *report) speedUp(r *run) float64 {
	b := rep.baseline(r.Op)
	if b == nil || r.Poll.on() {
		return 0
	}
	return ratio(b.Wall, r.Wall)
}

// targets says whether a plan run meets the targets ("" for other runs).
func (rep *report) targets(r *run) string {
	if r.Poll.on() {
		if q := r.Ratio(); q > targetPollRatio {
			return fmt.Sprintf("missed: ratio %.2f > %.2f", q, targetPollRatio)
		}
		return "met"
	}
	if r.Op != opPlan || r.Baseline {
		return ""
	}
	var missed []string
	if q := r.Ratio(); q > targetRatio {
		missed = append(missed, fmt.Sprintf("ratio %.2f > %.1f", q, targetRatio))
	}
	if s, want := rep.speedUp(r), targetSpeedUp*float64(r.Parallelism); s > 0 && s < want {
		missed = append(missed, fmt.Sprintf("speed-up %.1f < %.1f", s, want))
	}
	if len(missed) == 0 {
		return "met"
	}
	return fmt.Sprintf("missed: %v", missed)
}

func (rep *report) failures() []string {
	var out []string
	for _, r := range rep.runs {
		for _, f := range r.Failures {
			out = append(out, fmt.Sprintf("%s P=%d: %s", r.Op, r.Parallelism, f))
		}
	}
	for _, r := range rep.shared {
		for _, f := range r.Failures {
			out = append(out, fmt.Sprintf("%d plans back to back P=%d: %s", r.Runs, r.Parallelism, f))
		}
	}
	for _, r := range rep.stateRuns {
		for _, f := range r.Failures {
			out = append(out, fmt.Sprintf("emulator at %d users (%s): %s", r.Users, r.mode(), f))
		}
	}
	return out
}

// writeText prints the header and the aligned table.
func (rep *report) writeText(w io.Writer) {
	s, sc := rep.settings, rep.scenario
	fmt.Fprintf(w, "cbk-sync bench: %d users x %d tokens, latency %s, seed %d\n", s.users, s.tokens, s.latency, s.seed)
	if rep.timer > 0 {
		fmt.Fprintf(w, "machine: %d CPUs, %s; a %s timer takes %s here (the floor of every call)\n",
			runtime.NumCPU(), runtime.Version(), s.latency, rep.timer.Round(10*time.Microsecond))
	}
	fmt.Fprintf(w, "%s\n", sc.describe())
	fmt.Fprintf(w, "config: %d users declared, %d KiB, loaded in %s\n", rep.configUsers, rep.configBytes/1024, rep.configLoad.Round(time.Millisecond))
	fmt.Fprintf(w, "plan: %s\n", summaryLine(sc.want))
	fmt.Fprintf(w, "minimum reads: R = %d user-list calls + %d fetch, T = %d token lists", sc.minReads[opUserList], sc.minReads[opUserFetch], sc.minReads[opTokenList])
	for _, r := range rep.runs {
		if r.Op == opSync {
			fmt.Fprintf(w, "; planned writes: W = %d calls, longest user chain %d", r.Planned, r.Chain)
			break
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tP\twall\tbound\tratio\tspeed-up\treads\tmin reads\twrites\tplanned\tretries\tcall p50/p99/max\tpeak heap (growth)\tallocated\t")
	for _, r := range rep.runs {
		sp := "-"
		if v := rep.speedUp(r); v > 0 {
			sp = fmt.Sprintf("%.1fx", v)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.2f\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n",
			r.Op+r.Poll.short(), r.Parallelism, seconds(r.Wall), seconds(r.Bound()), r.Ratio(), sp,
			r.Reads, r.MinReads, r.Writes, r.Planned, r.Retries,
			fmt.Sprintf("%.1f/%.1f/%.1fms", ms(r.CallP50), ms(r.CallP99), ms(r.CallMax)),
			fmt.Sprintf("%s (+%.1f)", mib(r.PeakHeap), float64(r.PeakHeap-r.HeapBefore)/(1<<20)), mib(r.Allocated))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.runs {
		if r.Op == opSync {
			fmt.Fprintf(w, "sync P=%d%s: read+plan %s (bound %s, ratio %.2f), apply %s (bound %s, ratio %.2f); lock renewed %d times\n", r.Parallelism, r.Poll.short(),
				seconds(r.ReadWall), seconds(r.ReadBound), ratio(r.ReadWall, r.ReadBound),
				seconds(r.WriteWall), seconds(r.WriteBound), ratio(r.WriteWall, r.WriteBound), r.Renewals)
		}
	}
	for _, r := range rep.runs {
		if t := rep.targets(r); t != "" && !r.Poll.on() {
			fmt.Fprintf(w, "plan P=%d targets (ratio <= %.1f, speed-up >= %.1f x P): %s\n", r.Parallelism, targetRatio, targetSpeedUp, t)
		}
	}
	for _, r := range rep.runs {
		if r.Poll.on() {
			fmt.Fprintf(w, "%s P=%d%s: read %s, poll bound %s (ratio %.2f); polls %d admitted (minimum %d), %d rejected, waited %s; budget %d; target ratio <= %.2f: %s\n",
				r.Op, r.Parallelism, r.Poll.label(), seconds(r.ReadWall), seconds(r.PollBound), ratio(r.ReadWall, r.PollBound),
				r.Polls, r.MinPolls, r.PollRejections, seconds(r.PollWait), r.PollBudget, targetPollRatio, rep.targets(r))
		}
	}
	for _, r := range rep.shared {
		fmt.Fprintf(w, "P=%d: %s: %s, window bound %s (ratio %.2f); polls %d admitted (minimum %d), rejected per plan %v, budgets learned %v; target ratio <= %.1f: %s\n",
			r.Parallelism, r.label(), seconds(r.Wall), seconds(r.Bound), r.Ratio(), r.Polls, r.MinPolls, r.Rejections, r.Budgets, targetSharedRatio, r.target())
	}
	fmt.Fprintln(w, "bound: reads L x max(R, ceil(T/P)); writes L x max(ceil(W/P), longest chain); sync = both + 3 L (the lock).")
	if rep.settings.pollLimit > 0 {
		fmt.Fprintln(w, "poll bound (runs marked /given, /learned): reads under a limit of B polls per window W: W x (ceil(polls/B) - 1) + L x ceil(last window's polls / P), or the latency bound if larger.")
		if len(rep.shared) > 0 {
			fmt.Fprintln(w, "window bound (plans back to back): the same over every plan's polls from the first plan's start, or the plans' latency bounds added, if larger.")
		}
	}
	fmt.Fprintln(w, "call: one request as the client times it, from sending to the answer's headers (waiting for a connection included).")
	fmt.Fprintln(w, "peak heap: live heap sampled every 2ms (runtime/metrics heap objects, ~HeapAlloc), the in-process emulator included;\n"+
		"  growth: over the heap at the start of the run; allocated: bytes allocated during the run, emulator included.")
	rep.writeStateText(w)
	if len(rep.failures()) == 0 {
		fmt.Fprintf(w, "calls: every run made exactly the minimum reads and one write per planned call (a sync: and the lock's 3 calls, and a renewal every %s).\n", renewalPeriod(s.lockTTL))
	}
}

func summaryLine(s plan.Summary) string {
	return fmt.Sprintf("%d users to create, %d to update, %d to delete, %d to adopt; %d tokens to create, %d to update, %d to revoke, %d to rotate",
		s.UserCreate, s.UserUpdate, s.UserDelete, s.UserAdopt, s.TokenCreate, s.TokenUpdate+s.TokenAdopt, s.TokenRevoke, s.TokenRotate)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// The JSON form of the report: durations in milliseconds.
type jsonReport struct {
	Date      string      `json:"date"` // YYYY-MM-DD, UTC
	Machine   jsonMachine `json:"machine"`
	DurationS float64     `json:"duration_s"` // the whole benchmark

	Users        int              `json:"users"`
	Tokens       int              `json:"tokens_per_user"`
	LatencyMS    float64          `json:"latency_ms"`
	TimerMS      float64          `json:"timer_ms"`
	Seed         uint64           `json:"seed"`
	Drift        jsonDrift        `json:"drift"`
	Plan         plan.Summary     `json:"plan_summary"`
	MinReads     map[string]int64 `json:"min_reads"`
	ConfigLoadMS float64          `json:"config_load_ms"`
	Runs         []jsonRun        `json:"runs"`
	OK           bool             `json:"ok"`
	Failures     []string         `json:"failures"`

	// SharedRuns are the plans back to back under one poll window (shared.go).
	SharedRuns []jsonSharedRun `json:"shared_runs,omitempty"`

	StateDurationMS float64        `json:"state_duration_ms,omitempty"`
	StateRuns       []jsonStateRun `json:"state_runs,omitempty"`
	// StateScale is writes/s with --state at the largest size over the smallest.
	StateScale float64 `json:"state_scale,omitempty"`
}

type jsonDrift struct {
	UsersUpdated  int `json:"users_updated"`
	UsersNew      int `json:"users_new"`
	UsersOrphaned int `json:"users_orphaned"`
	TokensRevoked int `json:"tokens_revoked"`
	TokensRotated int `json:"tokens_rotated"`
}

type jsonRun struct {
	Op           string           `json:"op"`
	Parallelism  int              `json:"parallelism"`
	Baseline     bool             `json:"baseline"`
	WallMS       float64          `json:"wall_ms"`
	BoundMS      float64          `json:"bound_ms"`
	Ratio        float64          `json:"ratio"`
	SpeedUp      float64          `json:"speed_up,omitempty"`
	ReadWallMS   float64          `json:"read_wall_ms"`
	ReadBoundMS  float64          `json:"read_bound_ms"`
	WriteWallMS  float64          `json:"write_wall_ms,omitempty"`
	WriteBoundMS float64          `json:"write_bound_ms,omitempty"`
	Calls        map[string]int64 `json:"calls"`
	Reads        int64            `json:"reads"`
	MinReads     int64            `json:"min_reads"`
	Writes       int64            `json:"writes"`
	Planned      int64            `json:"planned_writes"`
	LongestChain int              `json:"longest_chain"`
	Retries      int64            `json:"retries"`
	Renewals     int64            `json:"lock_renewals"`
	CallP50MS    float64          `json:"call_p50_ms"`
	CallP99MS    float64          `json:"call_p99_ms"`
	CallMaxMS    float64          `json:"call_max_ms"`
	HeapBefore   uint64           `json:"heap_before_bytes"`
	PeakHeap     uint64           `json:"peak_heap_bytes"`
	Allocated    uint64           `json:"allocated_bytes"`
	Targets      string           `json:"targets,omitempty"`
	Failures     []string         `json:"failures"`
	// Poll-limit runs only.
	PollLimit      int     `json:"poll_limit,omitempty"`
	PollWindowMS   float64 `json:"poll_window_ms,omitempty"`
	PollBudget     string  `json:"poll_budget,omitempty"` // "given" or "learned"
	LearnedBudget  int     `json:"budget_end,omitempty"`
	Polls          int64   `json:"polls,omitempty"`
	MinPolls       int64   `json:"min_polls,omitempty"`
	PollRejections int64   `json:"poll_rejections,omitempty"`
	PollWaitMS     float64 `json:"poll_wait_ms,omitempty"`
	PollBoundMS    float64 `json:"poll_bound_ms,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (rep *report) jsonView() jsonReport {
	s, sc := rep.settings, rep.scenario
	out := jsonReport{
		Users: s.users, Tokens: s.tokens, LatencyMS: ms(s.latency), TimerMS: ms(rep.timer), Seed: s.seed,
		Drift: jsonDrift{sc.updated, sc.created, sc.orphans, sc.revoked, sc.rotated},
		Plan:  sc.want, MinReads: sc.minReads, ConfigLoadMS: ms(rep.configLoad),
		Failures: rep.failures(),
	}
	out.Date, out.Machine, out.DurationS = rep.started.UTC().Format(time.DateOnly), thisMachine(), rep.duration.Seconds()
	for _, r := range rep.shared {
		out.SharedRuns = append(out.SharedRuns, r.json())
	}
	out.StateDurationMS = ms(s.stateDuration)
	for _, r := range rep.stateRuns {
		out.StateRuns = append(out.StateRuns, r.json())
	}
	out.StateScale = stateScale(rep.stateRuns)
	out.OK = len(out.Failures) == 0
	if out.Failures == nil {
		out.Failures = []string{}
	}
	for _, r := range rep.runs {
		f := r.Failures
		if f == nil {
			f = []string{}
		}
		out.Runs = append(out.Runs, jsonRun{
			Op: r.Op, Parallelism: r.Parallelism, Baseline: r.Baseline,
			WallMS: ms(r.Wall), BoundMS: ms(r.Bound()), Ratio: r.Ratio(), SpeedUp: rep.speedUp(r),
			ReadWallMS: ms(r.ReadWall), ReadBoundMS: ms(r.ReadBound), WriteWallMS: ms(r.WriteWall), WriteBoundMS: ms(r.WriteBound),
			Calls: r.Calls, Reads: r.Reads, MinReads: r.MinReads, Writes: r.Writes, Planned: r.Planned,
			LongestChain: r.Chain, Retries: r.Retries, Renewals: r.Renewals, CallP50MS: ms(r.CallP50), CallP99MS: ms(r.CallP99), CallMaxMS: ms(r.CallMax), HeapBefore: r.HeapBefore, PeakHeap: r.PeakHeap, Allocated: r.Allocated,
			Targets: rep.targets(r), Failures: f,
		})
		if r.Poll.on() {
			j := &out.Runs[len(out.Runs)-1]
			j.PollLimit, j.PollWindowMS, j.PollBudget = r.Poll.limit, ms(r.Poll.window), strings.TrimPrefix(r.Poll.short(), "/")
			j.LearnedBudget, j.Polls, j.MinPolls, j.PollRejections = r.PollBudget, r.Polls, r.MinPolls, r.PollRejections
			j.PollWaitMS, j.PollBoundMS = ms(r.PollWait), ms(r.PollBound)
		}
	}
	return out
}
