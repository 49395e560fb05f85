package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
)

// The CI size runs end to end, passes its call checks and writes the JSON.
func TestMainCheckSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.json")
	var out, errb bytes.Buffer
	md := filepath.Join(t.TempDir(), "bench.md")
	code := Main(context.Background(), []string{"-check", "-parallelism", "4", "-json", path, "-markdown", md}, &out, &errb)

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var rep jsonReport
	require.NoError(t, json.Unmarshal(b, &rep))
	// A timing target missed on a loaded machine is reported, not failed here (.ci/run's
	// `go run ./bench -check` runs alone and fails on it); every other check must pass.
	require.Empty(t, untimed(rep.Failures), "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if len(rep.Failures) == 0 {
		require.Equal(t, exitOK, code)
		assert.True(t, rep.OK)
		assert.Contains(t, out.String(), "every run made exactly the minimum reads")
	} else {
		t.Logf("timing targets missed on this machine now (reported, not failed in a test): %q", rep.Failures)
		require.Equal(t, exitFailed, code)
	}
	assert.Equal(t, 200, rep.Users)
	assert.NotEmpty(t, rep.Date)
	assert.Positive(t, rep.Machine.CPUs)

	// The emulator's own runs: in memory, then with its state file, at each size.
	require.Len(t, rep.StateRuns, 4, "100 and 1,000 users, each in memory and with --state")
	for i, r := range rep.StateRuns {
		assert.Equal(t, []int{100, 100, 1000, 1000}[i], r.Users)
		assert.Equal(t, i%2 == 1, r.Persisted)
		assert.Positive(t, r.WritesPerSec)
		assert.Positive(t, r.ReadsAlone)
		assert.Positive(t, r.ReadsDuringWrites)
		assert.Empty(t, untimed(r.Failures))
		if r.Persisted {
			assert.Positive(t, r.Appends, "every write was appended to the journal")
			assert.Positive(t, r.OfMemory, "measured side by side with memory, round by round")
		}
		assert.Len(t, r.WriteRounds, stateRounds, "a turn of writes in every round")
		assert.Len(t, r.Shares, statePairs, "a share for every pair of read slices")
		assert.Equal(t, median(r.Shares), r.ReadShare)
	}
	assert.Positive(t, rep.StateScale)
	mdText, err := os.ReadFile(md)
	require.NoError(t, err)
	assert.Equal(t, renderMarkdown(rep), string(mdText), "the Markdown is the JSON's")
	require.Len(t, rep.Runs, 6, "plan P=1, plan P=4, sync P=4, then under the poll limit plan given, plan learned, sync given")
	for i, budget := range []string{"given", "learned", "given"} {
		r := rep.Runs[3+i]
		assert.Equal(t, budget, r.PollBudget)
		assert.Equal(t, 50, r.PollLimit)
		if r.Op == "sync" {
			// The lock's lookup, one user stream (the lease user in it) and 190 token lists.
			assert.Equal(t, int64(192), r.Polls, "the minimum: the lock's lookup, one user stream and 190 token lists")
		} else {
			assert.Equal(t, int64(191), r.Polls, "the minimum, 1 + T: one user stream and 190 token lists")
		}
		assert.Equal(t, r.MinPolls, r.Polls)
		if budget == "given" {
			assert.Zero(t, r.PollRejections)
		} else {
			assert.Positive(t, r.PollRejections, "a learned budget starts at a rejection")
		}
		assert.Positive(t, r.PollBoundMS)
		assert.Empty(t, untimed(r.Failures))
	}
	// Plans back to back under one shared poll window (issue 20): 4 plans of 15 users
	// (30% of the limit of 50), 16 polls each; the 4th meets the limit, learns, probes
	// up as the window slides, and the whole stays within 1.3x of the window bound.
	require.Len(t, rep.SharedRuns, 1, "one per parallelism")
	sh := rep.SharedRuns[0]
	assert.Equal(t, 4, sh.Plans)
	assert.Equal(t, 15, sh.Users)
	assert.Equal(t, int64(4*16), sh.Polls, "each plan: its user stream and 15 token lists (15 users: no orphan)")
	assert.Equal(t, sh.MinPolls, sh.Polls)
	assert.Equal(t, []int64{0, 0, 0}, sh.Rejections[:3], "the first three plans fit in the window")
	assert.Positive(t, sh.Rejections[3], "the fourth meets the limit")
	assert.Positive(t, sh.Ratio)
	assert.GreaterOrEqual(t, sh.BoundMS, 250.0, "at least one window: 60 polls over a limit of 50")
	assert.Empty(t, untimed(sh.Failures))
	assert.Contains(t, string(mdText), "4 plans of 15 users back to back")

	sync := rep.Runs[2]
	assert.Equal(t, "sync", sync.Op)
	assert.Equal(t, int64(2), sync.Calls[opUserList], "the lock's lookup and one stream")
	assert.Equal(t, int64(1), sync.Calls[opUserFetch], "the stream's last user still exists: it was whole")
	assert.Equal(t, int64(190), sync.Calls[opTokenList])
	assert.Equal(t, sync.Planned+2+sync.Renewals, sync.Writes, "the planned writes, the lock's create and delete and its renewals")
	assert.Equal(t, int64(20)+sync.Renewals, sync.Calls[opUserUpdate], "20 planned and the lock's renewals")
	pollSync := rep.Runs[5]
	require.Equal(t, "sync", pollSync.Op)
	assert.Positive(t, pollSync.Renewals, "a sync under the poll limit holds the lock for 3 windows of 250ms: -check's lock (TTL 600ms) is renewed every 200ms")
	assert.Equal(t, int64(10+1), sync.Calls[opUserCreate], "10 planned and the lock")
	assert.Equal(t, int64(160), sync.Planned, "10 + 20 + 10 user writes, 20 creates x 2 (create, confirm), 20 revokes, 20 rotations x 3 (create, confirm, revoke)")
}

// Odd sizes: a short last page, no tokens (declared as tokens: []), no users at all.
func TestMainOddSizes(t *testing.T) {
	for _, args := range [][]string{
		{"-users", "150", "-tokens", "3"},
		{"-users", "40", "-tokens", "0"},
		{"-users", "0"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), append(args, "-latency", "0", "-parallelism", "3", "-state-users", "", "-shared-runs", "0"), &out, &errb)
			assert.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		})
	}
}

// A sync that holds the lock longer than TTL/3 renews it: each renewal is a user
// update that no plan asked for, and the exact call checks count it (they did not,
// and `go run ./bench` failed at its defaults: "user.update: 502 calls, want 500").
func TestSyncCountsTheLocksRenewals(t *testing.T) {
	sc := newScenario(50, 1, 1, time.Now())
	// Renewed every 200ms; a run fences itself off 450ms after its last renewal, so a
	// loaded machine that delays a renewal does not end the sync.
	sc.lockTTL = 600 * time.Millisecond
	d, err := config.LoadBytes("bench.yaml", sc.yaml, nil)
	require.NoError(t, err)
	// 20ms per call: the sync takes well over 200ms.
	r, err := measure(context.Background(), sc, d, 20*time.Millisecond, opSync, 2, pollRun{}, false)
	require.NoError(t, err)
	assert.Empty(t, r.Failures)
	require.Positive(t, r.Renewals)
	assert.Equal(t, int64(sc.want.UserUpdate)+r.Renewals, r.Calls[opUserUpdate])

	// A miscount is caught: the renewals counted are checked against the hold.
	var bad run
	checkRenewals(&bad, 10, 100*time.Millisecond, 90*time.Millisecond)
	assert.Contains(t, strings.Join(bad.Failures, ""), "renewed 10 times while held 100ms, want 1..3")
}

func TestScenarioDrift(t *testing.T) {
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	sc := newScenario(1000, 2, 7, now)
	d, err := config.LoadBytes("bench.yaml", sc.yaml, nil)
	require.NoError(t, err)
	assert.Len(t, d.Users, 1000-50+50)
	assert.Equal(t, plan.Summary{UserCreate: 50, UserUpdate: 100, UserDelete: 50, TokenCreate: 100, TokenRevoke: 100, TokenRotate: 100}, sc.want)
	assert.Equal(t, map[string]int64{opUserList: 1, opTokenList: 950, opUserFetch: 1}, sc.minReads, "one stream and a fetch of its last user")
	sc.setListing(true)
	assert.Equal(t, map[string]int64{opUserList: 11, opTokenList: 950, opUserFetch: 1}, sc.minReads, "1,000 users: 10 full pages, an empty one and a fetch of its cursor")
	sc.setListing(false)

	again := newScenario(1000, 2, 7, now)
	assert.Equal(t, sc.yaml, again.yaml, "the same seed gives the same scenario")
	other := newScenario(1000, 2, 8, now)
	assert.NotEqual(t, sc.yaml, other.yaml, "another seed picks other users")
}

func TestPlannedWrites(t *testing.T) {
	p := &plan.Plan{Users: []plan.UserPlan{
		{Changes: []plan.Change{{Action: plan.UserCreate}, {Action: plan.TokenCreate}}},
		{Changes: []plan.Change{{Action: plan.UserUpdate}, {Action: plan.TokenRotate}, {Action: plan.TokenRevoke}}},
		{Changes: []plan.Change{{Action: plan.UserDelete}}},
	}}
	calls, total, chain := plannedWrites(p)
	assert.Equal(t, map[string]int64{opUserCreate: 1, opTokenCreate: 2, opTokenUpdate: 2, opUserUpdate: 1, opTokenDelete: 2, opUserDelete: 1}, calls)
	assert.Equal(t, int64(9), total, "a token create is two calls (create, confirm), a rotation three (create, confirm, revoke)")
	assert.Equal(t, 5, chain)
}

func TestCompareCalls(t *testing.T) {
	got := map[string]int64{opUserList: 51, opTokenList: 4751}
	want := map[string]int64{opUserList: 51, opTokenList: 4750}
	problems := compareCalls(got, want, opPlan)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0], "token.list: 4751 calls, want 4750")
	assert.Empty(t, compareCalls(want, want, opPlan))
}

func TestFlags(t *testing.T) {
	s, err := parseFlags([]string{"-check", "-parallelism", "8, 32,8,1"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 200, s.users)
	assert.Equal(t, time.Millisecond, s.latency)
	assert.Equal(t, []int{8, 32}, s.parallelism, "P=1 is the baseline, duplicates once")

	s, err = parseFlags([]string{"-check", "-users", "300"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 300, s.users, "a given flag wins over -check")

	for _, bad := range [][]string{{"-parallelism", "x"}, {"-users", "-1"}, {"extra"}} {
		_, err := parseFlags(bad, &bytes.Buffer{})
		assert.Error(t, err, "%v", bad)
	}
}

// A run under the poll limit fails its checks when the budget given is wrong (here
// above the limit, so the emulator rejects polls): the command would exit 1.
func TestPollRunFailsOnRejection(t *testing.T) {
	sc := newScenario(50, 1, 1, time.Now())
	d, err := config.LoadBytes("bench.yaml", sc.yaml, nil)
	require.NoError(t, err)
	r, err := measure(context.Background(), sc, d, 0, opPlan, 4, pollRun{limit: 10, window: 100 * time.Millisecond, budget: 20}, false)
	require.NoError(t, err)
	require.Positive(t, r.PollRejections)
	assert.Contains(t, strings.Join(r.Failures, "\n"), "rejected by the poll limit with the budget given, want 0")
	assert.Equal(t, r.MinPolls, r.Polls, "and yet every poll was made once, in the end")
}

// The window bound of plans back to back: N polls, B per window W, P at a time, L
// each: W x (ceil(N/B) - 1) + L x ceil(last window's polls / P), or the plans' own
// latency bounds added, if larger.
func TestSharedBound(t *testing.T) {
	ms := time.Millisecond
	assert.Equal(t, 10*time.Second+10*20*ms, sharedBound(576, 500, 10*time.Second, 20*ms, 8, time.Second), "576 polls: one window, then 76 at P=8")
	assert.Equal(t, 250*ms+2*ms, sharedBound(64, 50, 250*ms, ms, 8, 20*ms))
	assert.Equal(t, 3*time.Second, sharedBound(40, 50, 250*ms, ms, 8, 3*time.Second), "within one window: the plans' latency bounds")
	assert.Equal(t, 250*ms+7*ms, sharedBound(100, 50, 250*ms, ms, 8, 0), "two windows' worth: the second 50 start after one window, 8 at a time")
}

// untimed drops the failures that depend on the machine's timing (timingMiss).
func untimed(failures []string) []string {
	var out []string
	for _, f := range failures {
		if !strings.Contains(f, timingMiss) {
			out = append(out, f)
		}
	}
	return out
}
