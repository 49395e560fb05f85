package emulator

import (
	"sync"
	"time"
)

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

// pollState is the poll limit's sliding log, under pollMu.
type pollState struct {
	pollMu  sync.Mutex
	pollNow func() time.Time // the poll limit's clock; tests replace it
	pollLog []time.Time      // admitted polls still in the window, oldest first
	polls   int64            // admitted polls since ResetCounts
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
