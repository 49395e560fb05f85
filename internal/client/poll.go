package client

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"
)

// pollScheduler keeps the polls of a run — list requests: one page, or one whole
// JSONL stream — within the account's poll limit: at most budget of them in any
// trailing window, across every goroutine of the client. Fetches and writes are not
// polls and never wait here.
//
// A poll occupies the window from when it is sent until one window after its answer
// arrived: the server counted it at some moment in between, so the slot is freed no
// earlier than the server forgets it, and a run that keeps under the budget is never
// rejected. A rejected poll is not counted by the server, so its slot is dropped.
//
// The account's window is shared by every run (and every tool) of the account, so a
// rejection says "the window is full now", not "this run's share is what it holds"
// (issue 20). At a rejection the budget becomes the polls this run has in the window
// (its share now: learned, when it was not known; possibly 0), and the run probes up
// as the others' polls leave the window: one poll beyond the budget (a probe) every
// eighth of a window (probeEvery), for one window, then once a window; an accepted
// probe raises the budget by one and lets twice as many probes go at once
// (multiplicative increase, as TCP's slow start) until the next rejection. A given
// budget (--poll-budget) is a ceiling that probes never pass, so a run alone under it
// is never rejected; a run alone that learned its budget meets a few rejected probes
// in the window after it learned it, then one a window.
//
// Written by hand: x/time/rate is a token bucket, which lets a full burst through at
// every refill and so cannot promise "at most B in any trailing window"; the sliding
// log below can, and knows the exact time the oldest poll leaves the window.
type pollScheduler struct {
	window time.Duration
	clock  clock
	log    *slog.Logger

	mu      sync.Mutex
	budget  int  // polls per window, when known
	known   bool // the budget was given or learned
	ceiling int  // the given budget, which probes never pass; 0 = none
	epoch   int  // bumped when the budget changes, so late rejections do not lower it again
	// grows is the epoch whose polls, still in flight when the budget was set at a
	// rejection, add to it when they turn out accepted: the server counted them too.
	// -1: none.
	grows int
	// The polls that may still count in the server's window: inFlight sent and not
	// answered, and ends, the times the answered ones leave the window (a min-heap).
	inFlight int
	ends     endHeap
	// spans are the accepted polls sent within the last window, with their answer's
	// time: what an accepted probe proves the server holds (see raise).
	spans []pollSpan
	// probeAt is when the next probe may go; failedProbes counts the probes rejected
	// since the budget last changed; probes are those in flight, at most step of them.
	probeAt      time.Time
	failedProbes int
	probes, step int
	changed      chan struct{} // closed and replaced when a poll ends
	waiting      int           // polls waiting for a slot now
	waitStart    time.Time     // when waiting last went from 0 to 1
	lastLog      time.Time

	sent, rejected int64
	waited         time.Duration // wall time during which at least one poll waited
}

type pollSlot struct {
	epoch int
	probe bool      // sent beyond the budget, to find out whether the window has room
	sent  time.Time // when it was taken
}

type pollSpan struct{ sent, answered time.Time }

// probeEvery is how many probes a window the scheduler makes after a rejection,
// before it falls back to one a window: the others' polls that filled the window
// leave it at times it cannot know, so it looks every eighth of a window: the room
// they leave is found at most that late, for at most probeEvery rejected probes.
const probeEvery = 8

// endHeap is a min-heap of times (container/heap).
type endHeap []time.Time

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *endHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// maxPollRejections bounds the rejections of one poll in a row: each comes after a
// wait for the window, so reaching it means the limit does not clear at all.
const maxPollRejections = 10

func newPollScheduler(budget int, window time.Duration, c clock, log *slog.Logger) *pollScheduler {
	return &pollScheduler{window: window, clock: c, log: log, budget: budget, known: budget > 0, ceiling: budget,
		grows: -1, step: 1, changed: make(chan struct{})}
}

// acquire waits until a poll may be sent and takes its slot. It returns how long it
// waited.
func (s *pollScheduler) acquire(ctx context.Context) (*pollSlot, time.Duration, error) {
	var start time.Time
	for {
		s.mu.Lock()
		now := s.clock.Now()
		s.prune(now)
		probe, ok := false, !s.known || s.live() < s.budget
		if !ok && s.mayProbe() && !now.Before(s.probeAt) && s.probes < s.step {
			probe, ok = true, true
		}
		if ok {
			slot := &pollSlot{epoch: s.epoch, probe: probe, sent: now}
			s.inFlight++
			s.sent++
			if probe {
				s.probes++
			}
			var waited time.Duration
			if !start.IsZero() {
				s.endWait(now)
				waited = now.Sub(start)
			}
			s.mu.Unlock()
			return slot, waited, nil
		}
		// Wait for a slot to leave the window, for the next probe's time, or for a
		// poll in flight to end (it may let a probe go or drop its slot).
		wait := s.nextChange(now)
		ch := s.changed
		if start.IsZero() {
			start = now
			s.startWait(now, wait)
		}
		s.mu.Unlock()

		if err := s.sleep(ctx, wait, ch); err != nil {
			s.mu.Lock()
			s.endWait(s.clock.Now())
			s.mu.Unlock()
			return nil, 0, err
		}
	}
}

// nextChange is how long until a waiting poll may go, when known: the oldest poll of
// the run leaves the window, or a probe may go. 0: not known (only a poll in flight
// ending can change it).
func (s *pollScheduler) nextChange(now time.Time) time.Duration {
	next, ok := s.earliestEnd()
	if s.mayProbe() && now.Before(s.probeAt) && (!ok || s.probeAt.Before(next)) {
		next, ok = s.probeAt, true
	}
	if !ok {
		return 0
	}
	return next.Sub(now)
}

// sleep waits d, or until ch closes when d is 0, or whichever comes first; an ended
// ctx ends it with its cause.
func (s *pollScheduler) sleep(ctx context.Context, d time.Duration, ch chan struct{}) error {
	if d <= 0 {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	wake, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ch:
			cancel()
		case <-wake.Done():
		}
	}()
	_ = s.clock.Sleep(wake, d)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// mayProbe reports whether a probe could raise the budget: it is known, and below
// the given ceiling.
func (s *pollScheduler) mayProbe() bool {
	return s.known && (s.ceiling == 0 || s.live() < s.ceiling)
}

// finish records how a poll ended: answered at answered (the zero time when no answer
// came: the server may still have counted it), or rejected by the poll limit.
func (s *pollScheduler) finish(slot *pollSlot, answered time.Time, rejected bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if answered.IsZero() {
		answered = now
	}
	s.inFlight--
	if slot.probe {
		s.probes--
	}
	if !rejected {
		heap.Push(&s.ends, answered.Add(s.window))
		s.spans = append(s.spans, pollSpan{slot.sent, answered})
		switch {
		case slot.probe && slot.epoch == s.epoch:
			s.raise(now)
		case slot.epoch == s.grows:
			// In flight when the budget was set at a rejection, and counted too.
			s.budget++
		}
		if s.ceiling > 0 {
			s.budget = min(s.budget, s.ceiling)
		}
	} else {
		s.rejected++
		s.prune(now)
		accepted := len(s.ends)
		s.step = 1
		switch {
		case !s.known || (slot.epoch == s.epoch && accepted < s.budget):
			// Learned (or lowered to this run's share now) once: a poll sent before
			// the change cannot lower it again; one sent before and accepted adds to
			// it (grows).
			how := "learned"
			if s.known {
				how = "lowered"
			}
			if !s.known {
				s.failedProbes = 0 // lowered, the probes keep their pace
			}
			s.budget, s.known, s.grows = accepted, true, s.epoch
			s.epoch++
			s.log.Info("poll budget "+how+" from the API's rejection: the window is full now; probing up as it slides",
				"budget", accepted, "window", s.window)
		case slot.probe:
			s.failedProbes++
			s.log.Debug("poll probe rejected: the window is still full", "budget", s.budget, "window", s.window)
		}
		s.probeAt = now.Add(s.probeInterval())
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// raise reads an accepted probe. The server counts a poll at some moment between
// its sending and its answer, and forgets it one window later, earlier than this run
// frees its slot (one window after the answer); so a probe may be accepted only
// because the server forgot a poll this run still counts. What an accepted probe
// proves is that the server, which never holds more than the limit, now holds every
// poll of this run sent within the last window and answered already, the probe
// included: the budget rises to that count, and the probes double; when that is not
// above the budget, the probe found no room and counts as failed.
func (s *pollScheduler) raise(now time.Time) {
	cut := now.Add(-s.window)
	held, kept := 0, s.spans[:0]
	for _, sp := range s.spans {
		if !sp.sent.After(cut) {
			continue // out of the window, now and for any later probe
		}
		kept = append(kept, sp)
		if !sp.answered.After(now) {
			held++
		}
	}
	s.spans = kept
	if held <= s.budget {
		s.failedProbes++
		s.probeAt, s.step = now.Add(s.probeInterval()), 1
		return
	}
	if s.step == 1 {
		s.log.Info("poll budget probing up: the window has room again", "budget", held, "window", s.window)
	}
	s.budget, s.failedProbes = held, 0
	s.step = min(2*s.step, max(s.budget, 1))
}

// probeInterval is the time between probes: an eighth of a window for a window
// after the budget changed, then one window.
func (s *pollScheduler) probeInterval() time.Duration {
	if s.failedProbes >= probeEvery {
		return s.window
	}
	return s.window / probeEvery
}

// live is the number of polls that may count in the server's window now.
func (s *pollScheduler) live() int { return s.inFlight + len(s.ends) }

// prune forgets the polls that left the window by now.
func (s *pollScheduler) prune(now time.Time) {
	for len(s.ends) > 0 && !s.ends[0].After(now) {
		heap.Pop(&s.ends)
	}
	// Every span still listed was answered within the window or is in ends; the
	// spans are answered in about their order, so the oldest are first.
	i := 0
	for i < len(s.spans) && !s.spans[i].sent.After(now.Add(-s.window)) {
		i++
	}
	s.spans = s.spans[i:]
}

func (s *pollScheduler) earliestEnd() (time.Time, bool) {
	if len(s.ends) == 0 {
		return time.Time{}, false
	}
	return s.ends[0], true
}

// startWait counts a poll that waits; one log line per wait, at most one per window.
func (s *pollScheduler) startWait(now time.Time, wait time.Duration) {
	s.waiting++
	if s.waiting == 1 {
		s.waitStart = now
	}
	if s.lastLog.IsZero() || now.Sub(s.lastLog) >= s.window {
		s.lastLog = now
		attrs := []any{"polls_in_window", s.live(), "budget", s.budget, "window", s.window}
		if wait > 0 {
			attrs = append(attrs, "wait", wait.Round(time.Millisecond))
		}
		s.log.Info("poll budget reached: waiting for the window to slide", attrs...)
	}
}

func (s *pollScheduler) endWait(now time.Time) {
	s.waiting--
	if s.waiting == 0 {
		s.waited += now.Sub(s.waitStart)
	}
}

// PollStatus is the poll scheduler's state at one moment, for a progress display.
type PollStatus struct {
	Sent    int64         // polls sent so far
	Live    int           // polls in the trailing window (or in flight)
	Budget  int           // polls per window; 0 = not known yet
	Window  time.Duration // the window
	Waiting bool          // some poll is waiting for a slot
	// Next is how long until the next slot frees, while waiting (0 when not known:
	// every poll in the window is still in flight).
	Next time.Duration
}

func (s *pollScheduler) status() PollStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.prune(now)
	st := PollStatus{Sent: s.sent, Live: s.live(), Budget: s.budget, Window: s.window, Waiting: s.waiting > 0}
	if st.Waiting {
		st.Next = s.nextChange(now)
	}
	return st
}

// PollStatus reports the poll scheduler's state (shared with ReadOnly clients).
func (c *Client) PollStatus() PollStatus { return c.polls.status() }

// isPoll reports the operations that count against the poll limit.
func isPoll(op string) bool { return op == OpUserList || op == OpTokenList }
