package client

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slidingWindow is the platform's poll limit as these tests model it (the emulator's
// admitPoll): a poll is counted when it arrives, at most limit of them in any
// trailing window; a refused poll is not counted.
type slidingWindow struct {
	limit  int
	window time.Duration
	log    []time.Time // the polls admitted, oldest first
}

func (w *slidingWindow) admit(now time.Time) bool {
	cut := now.Add(-w.window)
	i := 0
	for i < len(w.log) && !w.log[i].After(cut) {
		i++
	}
	w.log = w.log[i:]
	if len(w.log) >= w.limit {
		return false
	}
	w.log = append(w.log, now)
	return true
}

// pollRun is one run's polls through its own scheduler, one at a time, each taking
// latency on the fake clock, against the shared window srv.
type pollRun struct {
	sched      *pollScheduler
	sent       []time.Time // when each admitted poll arrived
	rejections int
	maxInARow  int
}

func newPollRun(clk *fakeClock, budget int, window time.Duration) *pollRun {
	return &pollRun{sched: newPollScheduler(budget, window, clk, slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

// polls makes n polls, each repeated until the window admits it, as do.go does.
func (r *pollRun) polls(t *testing.T, clk *fakeClock, srv *slidingWindow, n int, latency time.Duration) {
	t.Helper()
	for range n {
		inARow := 0
		for {
			slot, _, err := r.sched.acquire(context.Background())
			require.NoError(t, err)
			at := clk.Now()
			ok := srv.admit(at)
			clk.advance(latency)
			r.sched.finish(slot, clk.Now(), !ok)
			if ok {
				r.sent = append(r.sent, at)
				break
			}
			r.rejections++
			inARow++
			r.maxInARow = max(r.maxInARow, inARow)
			require.Less(t, inARow, maxPollRejections, "a poll rejected %d times in a row", inARow)
		}
	}
}

// mostInWindow is the largest number of this run's polls in any trailing window.
func (r *pollRun) mostInWindow(window time.Duration) int {
	most, j := 0, 0
	for i, at := range r.sent {
		for !r.sent[j].After(at.Add(-window)) {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// windowBound is the least time n polls can take from the first, at most limit in any
// trailing window, one at a time: the last window's polls cannot start before k-1
// windows have passed, and then take latency each.
func windowBound(n, limit int, window, latency time.Duration) time.Duration {
	k := (n + limit - 1) / limit
	last := n - (k-1)*limit
	return window*time.Duration(k-1) + latency*time.Duration(last)
}

// Issue 20: plans back to back under one poll window. Three earlier runs spent 90 of
// the account's 100 polls a minute; a fourth, learning its budget, meets the limit
// after 10 polls. Those 10 are not its budget: the window was full of the others'
// polls, which leave it within a minute. The fourth run probes as the window slides,
// and all 120 polls end within 1.3x of the window bound (one minute, and the last
// window's polls). Learning "budget = my 10" and never probing up took 2.10x: three
// more whole windows.
func TestPollBudgetLearnedUnderASharedWindow(t *testing.T) {
	const limit, window, latency = 100, time.Minute, 100 * time.Millisecond
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	srv := &slidingWindow{limit: limit, window: window}
	start := clk.Now()
	for range 3 {
		newPollRun(clk, 0, window).polls(t, clk, srv, 30, latency)
	}
	fourth := newPollRun(clk, 0, window)
	fourth.polls(t, clk, srv, 30, latency)

	took := clk.Now().Sub(start)
	bound := windowBound(120, limit, window, latency)
	ratio := float64(took) / float64(bound)
	t.Logf("4 runs of 30 polls, %d per %s: %s, bound %s, ratio %.2f; the 4th: %d rejections, budget %d",
		limit, window, took, bound, ratio, fourth.rejections, fourth.sched.budget)
	assert.LessOrEqual(t, ratio, 1.3, "back-to-back runs under a shared window: within 1.3x of the window bound")
	assert.LessOrEqual(t, fourth.rejections, 1+probeEvery, "a rejection at the limit, then a probe an eighth of a window for one window")
	assert.LessOrEqual(t, fourth.sched.budget, limit)
}

// The same when the earlier runs spread their polls over most of the window (a person
// reads each plan before the next): the fourth run meets the limit late in the
// window, and its probes every eighth of a window find the room as the first run's polls
// leave, not a whole window after its rejection (1.87x: 1m56s for a bound of 1m02s).
func TestPollBudgetLearnedUnderASpreadSharedWindow(t *testing.T) {
	const limit, window, latency = 100, time.Minute, 100 * time.Millisecond
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	srv := &slidingWindow{limit: limit, window: window}
	start := clk.Now()
	for range 3 {
		newPollRun(clk, 0, window).polls(t, clk, srv, 30, latency)
		clk.advance(15 * time.Second) // a person reads the plan, then runs the next
	}
	fourth := newPollRun(clk, 0, window)
	fourth.polls(t, clk, srv, 30, latency)
	took := clk.Now().Sub(start)
	bound := windowBound(120, limit, window, latency)
	ratio := float64(took) / float64(bound)
	t.Logf("spread: %s, bound %s, ratio %.2f, the 4th: %d rejections", took, bound, ratio, fourth.rejections)
	assert.LessOrEqual(t, ratio, 1.3)
	assert.LessOrEqual(t, fourth.rejections, 1+probeEvery)
}

// A run alone that learns its budget converges on it: one rejection to learn it,
// probes an eighth of a window apart for one window, then at most one a window; the budget
// is the limit, and the whole read within 1.3x of the window bound.
func TestPollBudgetLearnedAloneConverges(t *testing.T) {
	const limit, window, latency = 100, time.Minute, 100 * time.Millisecond
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	srv := &slidingWindow{limit: limit, window: window}
	start := clk.Now()
	r := newPollRun(clk, 0, window)
	r.polls(t, clk, srv, 450, latency)
	took := clk.Now().Sub(start)
	bound := windowBound(450, limit, window, latency)
	windows := int(took/window) + 1
	t.Logf("alone: %s, bound %s, %d rejections over %d windows, budget %d", took, bound, r.rejections, windows, r.sched.budget)
	assert.Equal(t, limit, r.sched.budget, "the learned budget is the limit")
	assert.LessOrEqual(t, r.rejections, probeEvery+windows, "one to learn, probes for a window, then at most one a window")
	assert.LessOrEqual(t, float64(took)/float64(bound), 1.3)
}

// A given budget is a ceiling: a run alone under it is never rejected; a run that
// meets others' polls in the window lowers its budget to its share, and probes back up
// to the given budget, never past it.
func TestPollBudgetGivenIsACeiling(t *testing.T) {
	const limit, window, latency = 100, time.Minute, 100 * time.Millisecond
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	srv := &slidingWindow{limit: limit, window: window}
	alone := newPollRun(clk, 80, window)
	alone.polls(t, clk, srv, 250, latency)
	assert.Zero(t, alone.rejections, "alone under its given budget: never rejected")
	assert.Equal(t, 80, alone.mostInWindow(window))

	clk.advance(window)
	other := newPollRun(clk, 0, window)
	other.polls(t, clk, srv, 60, latency)
	shared := newPollRun(clk, 80, window)
	shared.polls(t, clk, srv, 250, latency)
	t.Logf("shared: %d rejections, budget %d, most in a window %d", shared.rejections, shared.sched.budget, shared.mostInWindow(window))
	assert.Positive(t, shared.rejections, "the others' polls filled the window")
	assert.LessOrEqual(t, shared.mostInWindow(window), 80, "never past the given budget")
	assert.Equal(t, 80, shared.sched.budget, "back up to the given budget once the others' polls left")
}
