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
// rejected. When the budget is not given, it is learned at the first rejection: the
// polls this run had answered in the trailing window. A rejected poll is not counted
// by the server, so its slot is dropped.
//
// Written by hand: x/time/rate is a token bucket, which lets a full burst through at
// every refill and so cannot promise "at most B in any trailing window"; the sliding
// log below can, and knows the exact time the oldest poll leaves the window.
type pollScheduler struct {
	window time.Duration
	clock  clock
	log    *slog.Logger

	mu     sync.Mutex
	budget int // polls per window; 0 = not known yet
	epoch  int // bumped when the budget changes, so late rejections do not lower it again
	// grows is the epoch whose polls, still in flight when the budget was learned,
	// add to it when they turn out accepted: the server counted them too. -1: none.
	grows int
	// The polls that may still count in the server's window: inFlight sent and not
	// answered, and ends, the times the answered ones leave the window (a min-heap).
	inFlight int
	ends     endHeap
	changed  chan struct{} // closed and replaced when a slot ends or is dropped
	// pauseUntil holds every poll back after a rejection that taught nothing (no poll
	// of this run was in the window: the account's polls were spent elsewhere).
	pauseUntil time.Time
	waiting    int       // polls waiting for a slot now
	waitStart  time.Time // when waiting last went from 0 to 1
	lastLog    time.Time

	sent, rejected int64
	waited         time.Duration // wall time during which at least one poll waited
}

type pollSlot struct{ epoch int }

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
	return &pollScheduler{window: window, clock: c, log: log, budget: budget, grows: -1, changed: make(chan struct{})}
}

// acquire waits until a poll may be sent and takes its slot. It returns how long it
// waited.
func (s *pollScheduler) acquire(ctx context.Context) (*pollSlot, time.Duration, error) {
	var start time.Time
	for {
		s.mu.Lock()
		now := s.clock.Now()
		s.prune(now)
		var wait time.Duration
		var ch chan struct{}
		switch {
		case now.Before(s.pauseUntil):
			wait = s.pauseUntil.Sub(now)
		case s.budget == 0 || s.live() < s.budget:
			slot := &pollSlot{epoch: s.epoch}
			s.inFlight++
			s.sent++
			var waited time.Duration
			if !start.IsZero() {
				s.endWait(now)
				waited = now.Sub(start)
			}
			s.mu.Unlock()
			return slot, waited, nil
		default:
			if end, ok := s.earliestEnd(); ok {
				wait = end.Sub(now)
			} else {
				ch = s.changed // every slot is in flight: wait for one to end
			}
		}
		if start.IsZero() {
			start = now
			s.startWait(now, wait)
		}
		s.mu.Unlock()

		var err error
		if ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				err = context.Cause(ctx)
			}
		} else {
			err = s.clock.Sleep(ctx, wait)
		}
		if err != nil {
			s.mu.Lock()
			s.endWait(s.clock.Now())
			s.mu.Unlock()
			return nil, 0, err
		}
	}
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
	if !rejected {
		heap.Push(&s.ends, answered.Add(s.window))
		if slot.epoch == s.grows {
			s.budget++
		}
	} else {
		s.rejected++
		s.prune(now)
		accepted := len(s.ends)
		switch {
		case accepted == 0:
			// Nothing of this run is in the window: the account's polls went elsewhere.
			s.pauseUntil = now.Add(s.window)
			s.log.Warn("poll limit reached with no poll of this run in the window; waiting one window", "window", s.window)
		case s.budget == 0 || (slot.epoch == s.epoch && accepted < s.budget):
			// Learned (or, for a budget that proved too high, corrected) once: a poll
			// sent before the change cannot teach it again.
			how := "learned"
			s.grows = -1
			if s.budget != 0 {
				how = "lowered"
			} else {
				s.grows = s.epoch
			}
			s.budget = accepted
			s.epoch++
			s.log.Info("poll budget "+how+" from the API's rejection", "budget", accepted, "window", s.window)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// live is the number of polls that may count in the server's window now.
func (s *pollScheduler) live() int { return s.inFlight + len(s.ends) }

// prune forgets the polls that left the window by now.
func (s *pollScheduler) prune(now time.Time) {
	for len(s.ends) > 0 && !s.ends[0].After(now) {
		heap.Pop(&s.ends)
	}
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
		if now.Before(s.pauseUntil) {
			st.Next = s.pauseUntil.Sub(now)
		} else if end, ok := s.earliestEnd(); ok {
			st.Next = end.Sub(now)
		}
	}
	return st
}

// PollStatus reports the poll scheduler's state (shared with ReadOnly clients).
func (c *Client) PollStatus() PollStatus { return c.polls.status() }

// isPoll reports the operations that count against the poll limit.
func isPoll(op string) bool { return op == OpUserList || op == OpTokenList }
