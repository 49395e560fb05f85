package client

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxRetryAfter bounds the pause one Retry-After can ask for: a server (or a proxy)
// that says "an hour" is heard as "five minutes", and a call waits no longer than its
// own --retry-timeout anyway.
const maxRetryAfter = 5 * time.Minute

// pause is the shared wait after a 429: every request of the client (and of its
// ReadOnly copies) waits for it before it is sent, so one worker's 429 slows them all.
// It never holds a request past that request's own retry deadline: a request whose
// deadline comes before the pause ends is not sent and fails at once (pauseError),
// instead of waiting for a pause it could not outlive.
type pause struct {
	mu    sync.Mutex
	until time.Time
	asked time.Duration // the wait the 429 asked for (capped at maxRetryAfter)
	cause error         // the 429 that asked for it
}

// push extends the pause to until, if that is later than the pause in force.
func (p *pause) push(until time.Time, asked time.Duration, cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until.After(p.until) {
		p.until, p.asked, p.cause = until, asked, cause
	}
}

// wait waits for the pause to end, or fails at once with a *pauseError when it ends
// after deadline (the zero time: no deadline); an ended ctx ends the wait.
func (p *pause) wait(ctx context.Context, clk clock, deadline time.Time) error {
	for {
		p.mu.Lock()
		until, asked, cause := p.until, p.asked, p.cause
		p.mu.Unlock()
		now := clk.Now()
		if !until.After(now) {
			return nil
		}
		if !deadline.IsZero() && until.After(deadline) {
			return &pauseError{asked: asked, left: max(deadline.Sub(now), 0), cause: cause}
		}
		if err := clk.Sleep(ctx, until.Sub(now)); err != nil {
			return err
		}
	}
}

// pauseError is the error of a request not sent because the shared pause after a 429
// ends after the request's own retry deadline. Like the 429 itself it says the server
// did nothing; it wraps that 429.
type pauseError struct {
	asked, left time.Duration
	cause       error
}

func (e *pauseError) Error() string {
	return fmt.Sprintf("not sent: the API asked every request to wait %s (Retry-After), more than the %s this call may still wait (its --retry-timeout, or the run's own bound); after: %v",
		e.asked.Round(time.Millisecond), e.left.Round(time.Millisecond), e.cause)
}

func (e *pauseError) Unwrap() error { return e.cause }
