package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
)

// ErrLost is the cause of the context a Lease cancels, and the error of Check, once
// the lease is lost: found taken over, or possibly expired by this run's own clock
// (not renewed in time: the run was stalled, suspended or cut off).
var ErrLost = errors.New("the lock on this account was lost")

// margin is how long before its expiry a lease counts as lost to its holder: writes
// stop that early, so that one sent just before cannot arrive after another run may
// have taken the lease over, and a renewal slower than this is not trusted.
func (l *Lease) margin() time.Duration { return l.o.TTL / 4 }

// elapsed is the time since t by both the monotonic and the wall clock, whichever
// says more: the monotonic clock stops while a machine sleeps, the wall clock may be
// set back; a lease must count as expired if either says so.
func elapsed(t, now time.Time) time.Duration {
	return max(now.Sub(t), now.Round(0).Sub(t.Round(0)))
}

// Check is the fence every write asks before it is sent (client.Client.WithWriteGate):
// nil while the lease is held with more than the safety margin left by this run's own
// clock, else an error wrapping ErrLost. Once it has failed it always fails.
func (l *Lease) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		if since := elapsed(l.renewed, l.o.Now()); since >= l.o.TTL-l.margin() {
			l.loseLocked(fmt.Errorf("%w: it was last renewed %s ago, so it may have expired (lease %s): no write is sent", ErrLost, since.Round(time.Millisecond), l.o.TTL))
		}
	}
	return l.lost
}

// lose marks the lease lost for good and cancels the run's context.
func (l *Lease) lose(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loseLocked(err)
}

func (l *Lease) loseLocked(err error) {
	if l.lost != nil {
		return
	}
	l.lost = err
	if errors.Is(err, ErrLost) {
		l.o.Logger.Error(err.Error() + "; no new change starts")
	}
	l.cancel(err)
}

// renew extends the lease every TTL/3 until Release, through the lease's own client
// (its own connections, retries and 429 pause: nothing the run queues delays it). A
// renewal counts only if its answer came within the margin of sending it; one that
// finds the lease gone (taken over) loses it at once, and so does Check once the
// lease was not renewed for TTL minus the margin.
func (l *Lease) renew() {
	defer close(l.done)
	tick := l.o.Renew
	if tick == nil {
		t := time.NewTicker(l.o.TTL / 3)
		defer t.Stop()
		tick = t.C
	}
	// A renewal in flight (or waiting in the client) is cancelled by Release, which
	// must never wait for it.
	stopped, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	go func() {
		select {
		case <-l.stop:
			cancelAll()
		case <-stopped.Done():
		}
	}()
	for {
		select {
		case <-l.stop:
			return
		case <-tick:
		}
		if l.Check() != nil {
			return
		}
		l.mu.Lock()
		validUntil := l.renewed.Add(l.o.TTL - l.margin())
		l.mu.Unlock()
		sent := l.o.Now()
		ctx, cancel := context.WithDeadline(stopped, minTime(validUntil, sent.Add(l.margin())))
		err := l.api.UpdateUser(ctx, l.id, l.body(false))
		cancel()
		switch {
		case stopped.Err() != nil:
			return // released meanwhile
		case err == nil && elapsed(sent, l.o.Now()) < l.margin():
			l.mu.Lock()
			if l.lost == nil {
				l.renewed = sent
			}
			l.mu.Unlock()
		case client.IsNotFound(err):
			l.lose(fmt.Errorf("%w: it was taken over by another run (lease user %s is gone)", ErrLost, l.id))
			return
		default:
			if err == nil {
				err = errors.New("the answer came too late to count")
			}
			l.o.Logger.Warn("renewing the lock failed; retrying", "error", err)
			if l.Check() != nil {
				return
			}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
