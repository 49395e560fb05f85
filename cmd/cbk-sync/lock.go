package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/lease"
)

// lockAccount takes the account's lock for a run that writes (unless --no-lock): the
// lease user of owner, renewed while the run lasts. The context it returns is
// cancelled if the lock is ever lost, so that no new change starts; release deletes
// the lease and must run when the run ends, whatever happened.
func (f *ApplyFlags) lockAccount(ctx context.Context, env *Env, s *session, owner string) (context.Context, func(), error) {
	if f.NoLock {
		env.Log.Warn("--no-lock: not taking the lock on this account; another run at the same time could duplicate tokens")
		return ctx, func() {}, nil
	}
	l, lctx, err := lease.Acquire(ctx, s.writer, lease.Options{Owner: owner, Wait: f.LockTimeout, TTL: f.LockTTL, Logger: env.Log})
	var held *lease.HeldError
	switch {
	case errors.As(err, &held):
		wait := "pass --lock-timeout 10m to wait for it"
		if f.LockTimeout > 0 {
			wait = fmt.Sprintf("it was still held after --lock-timeout %s", f.LockTimeout)
		}
		return nil, nil, withCode(exitLocked, fmt.Errorf("%w; nothing was read or changed: try again when it ends (%s); a crashed run's lock expires by itself", err, wait))
	case err != nil:
		return nil, nil, err
	}
	release := func() {
		rctx, cancel := releaseContext(ctx, env)
		defer cancel()
		if err := l.Release(rctx); err != nil {
			env.Log.Error(err.Error())
			return
		}
		if s.saved {
			// The in-process emulator's state was saved after the apply, with the
			// lease still in it: save it again without.
			if err := s.save(); err != nil {
				env.Log.Error(err.Error())
			}
		}
	}
	return lctx, release, nil
}

// releaseAfterInterrupt bounds the lease's delete once the run was interrupted: one
// quick call, not a wait; a lease left behind expires by itself (--lock-ttl).
const releaseAfterInterrupt = 5 * time.Second

// releaseContext is the context the lease is released in: a second interrupt cancels
// it, and after a first one it lasts releaseAfterInterrupt at most.
func releaseContext(ctx context.Context, env *Env) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		return context.WithTimeout(env.abort, releaseAfterInterrupt)
	}
	return context.WithCancel(env.abort)
}

// lockLost turns an apply cut short by the loss of the lock into an error saying so.
func lockLost(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), lease.ErrLost) {
		return withCode(exitPartial, fmt.Errorf("%w: the run stopped starting changes; the report says what was done", lease.ErrLost))
	}
	return err
}
