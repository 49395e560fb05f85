package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/lease"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// lockAccount takes the account's lock for a run that writes (unless --no-lock): the
// lease user of owner, renewed by its own client while the run lasts. From then on
// every write of the session's writer asks the lease first (the fence), and the
// context it returns is cancelled once the lock is lost, so that no new change
// starts; release deletes the lease and must run when the run ends, whatever happened.
//
// An account at its user quota cannot hold the lock (a user); a run whose plan p
// creates no user then runs without it, in the protocol of apply.Options.Unlocked,
// under which concurrent runs cannot both deliver a token.
//
// A plan that adopts users also takes the adoption lock (state.AdoptionScope), shared
// by every owner, before the plan is read again under the locks (lockedPlan): of two
// owners adopting one user, the second reads it after the first wrote its marker, and
// is refused (owned by another owner) instead of overwriting it.
func (f *ApplyFlags) lockAccount(ctx context.Context, env *Env, s *session, owner string, p *plan.Plan) (context.Context, func(), error) {
	if f.NoLock {
		env.Log.Warn("--no-lock: not taking the lock on this account; another run at the same time could duplicate tokens")
		return ctx, func() {}, nil
	}
	api, clock, err := s.leaseClient()
	if err != nil {
		return nil, nil, err
	}
	l, lctx, err := lease.Acquire(ctx, api, lease.Options{Owner: owner, Wait: f.LockTimeout, TTL: f.LockTTL, Logger: env.Log, ServerNow: clock.Now})
	var held *lease.HeldError
	var quota *lease.QuotaError
	switch {
	case errors.As(err, &quota) && p.Summary().UserCreate == 0:
		env.Log.Warn("the account is at its user quota, so the lock (a lease user) cannot be taken; this plan creates no user, so the run goes on without it: before delivering a new token's secret it lists the user's tokens and keeps its token only if no other of that name was delivered or created first (one token list per new token)")
		s.unlocked = true
		return ctx, func() {}, nil
	case errors.As(err, &quota):
		return nil, nil, fmt.Errorf("%w; this plan creates users, which the quota refuses anyway: make room (delete a user), or pass --no-lock if no other run can start meanwhile", err)
	case errors.As(err, &held):
		return nil, nil, withCode(exitLocked, fmt.Errorf("%w; nothing was changed: try again when it ends (%s); a lease that is not renewed expires by the server's clock, one of a run killed on this host at once, and 'cbk-sync unlock' breaks it", err, f.lockWaitHint()))
	case err != nil:
		return nil, nil, err
	}
	leases := []*lease.Lease{l}
	release := func() {
		rctx, cancel := releaseContext(ctx, env)
		defer cancel()
		for i := len(leases) - 1; i >= 0; i-- {
			if err := leases[i].Release(rctx); err != nil {
				env.Log.Error(err.Error())
				return
			}
		}
		if s.saved {
			// The in-process emulator's state was saved after the apply, with the
			// lease still in it: save it again without.
			if err := s.save(); err != nil {
				env.Log.Error(err.Error())
			}
		}
	}
	if p.Summary().UserAdopt > 0 {
		al, alctx, err := lease.Acquire(lctx, api, lease.Options{Owner: state.AdoptionScope, Wait: f.LockTimeout, TTL: f.LockTTL, Logger: env.Log, ServerNow: clock.Now})
		switch {
		case errors.As(err, &quota):
			env.Log.Warn("the account is at its user quota, so the adoption lock (a lease user) cannot be taken; the run adopts without it: another owner's run adopting the same user at this moment could overwrite its marker")
			s.adopting = true
		case errors.As(err, &held):
			release()
			return nil, nil, withCode(exitLocked, fmt.Errorf("another cbk-sync run is adopting users in this account (holder %q, expires %s unless renewed); this plan adopts users, and two owners must not adopt one user at once: nothing was changed: try again when it ends (%s)",
				held.Holder, held.Expires.UTC().Format(time.RFC3339), f.lockWaitHint()))
		case err != nil:
			release()
			return nil, nil, err
		default:
			leases = append(leases, al)
			lctx = alctx
			s.adopting = true
		}
	}
	gate := func() error {
		for _, l := range leases {
			if err := l.Check(); err != nil {
				return err
			}
		}
		return nil
	}
	s.writer = s.writer.WithWriteGate(gate)
	return lctx, release, nil
}

// lockWaitHint says what to do about a lock another run holds: wait for it, or that
// the wait given was not enough.
func (f *ApplyFlags) lockWaitHint() string {
	if f.LockTimeout > 0 {
		return fmt.Sprintf("it was still held after --lock-timeout %s", f.LockTimeout)
	}
	return "pass --lock-timeout 10m to wait for it"
}

// releaseAfterInterrupt bounds the lease's delete once the run was interrupted: one
// quick call, not a wait; a lease left behind expires by itself (--lock-ttl).
const releaseAfterInterrupt = 5 * time.Second

// releaseContext is the context the lease is released in: a second interrupt cancels
// it; after a first one it lasts releaseAfterInterrupt at most, and a first one that
// comes while it is in flight gives it the grace period of every call in flight.
func releaseContext(ctx context.Context, env *Env) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		return context.WithTimeout(env.abort, releaseAfterInterrupt)
	}
	rctx, cancel := context.WithCancel(env.abort)
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(min(env.Globals.InterruptGrace, releaseAfterInterrupt), cancel) })
	return rctx, func() {
		stop()
		cancel()
	}
}

// lockLost turns an apply cut short by the loss of the lock into an error saying so.
func lockLost(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, lease.ErrLost) {
		return withCode(exitPartial, fmt.Errorf("%w: the run stopped starting changes and sent no write after; the report says what was done", cause))
	}
	return err
}

// lockedPlan reads again, once the lock is held, the remote objects the approved plan
// depends on (as apply FILE does) and returns the plan to apply: the approved one, if
// it still holds. Otherwise replan (nil for a saved plan, which is then refused)
// computes it again under the lock: the same changes run; other ones are shown and
// asked for again, or refused (exit 4) when there is no terminal to ask on. A nil
// plan without error means there is nothing left to apply.
func (f *ApplyFlags) lockedPlan(ctx context.Context, env *Env, s *session, saved *plan.Saved, sink *secretsSink, replan func() (*plan.Plan, error)) (*plan.Plan, error) {
	reads := saved.Reads()
	got, err := s.reader.ReadObjects(ctx, reads.Users, reads.Tokens, reads.Listing)
	if err != nil {
		return nil, fmt.Errorf("reading the remote objects the plan depends on: %w", err)
	}
	p, err := saved.Verify(plan.Fresh{Users: got.Users, Listed: reads.Listing, Tokens: got.Tokens})
	if err == nil {
		p.SecretsTo = sink.destinationFor(p)
		return p, nil
	}
	if replan == nil || !(errors.Is(err, plan.ErrStale) || errors.Is(err, plan.ErrUnsafe)) {
		return nil, err
	}
	env.Log.Warn("the account changed after planning; planning again under the lock", "reason", err.Error())
	np, err := replan()
	if err != nil {
		return nil, err
	}
	np.SecretsTo = sink.destinationFor(np)
	if plan.SameChanges(np, saved.Plan) {
		return np, nil
	}
	env.Log.Warn("the plan changed: it is shown again")
	if err := env.view.Plan(np); err != nil {
		return nil, err
	}
	if !np.Safety.Safe {
		return nil, unsafef("refusing to apply an unsafe plan (see above); nothing was changed")
	}
	if np.Empty() {
		return nil, nil
	}
	if np.Summary().UserAdopt > 0 && !s.adopting && !f.NoLock && !s.unlocked {
		return nil, unsafef("the plan changed between planning and taking the lock and now adopts users, which needs the adoption lock this run did not take: nothing was changed: run again")
	}
	if err := checkSink(np, sink); err != nil {
		return nil, err
	}
	if !env.IO.CanPrompt() {
		return nil, unsafef("the plan changed between planning and taking the lock (another run or client changed the account): refusing to apply a plan that was not approved; nothing was changed: review the plan above and run again")
	}
	ok, err := env.IO.Confirm(ctx, "The plan changed. Do you want to apply these changes?")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("apply cancelled; nothing was changed")
	}
	return np, nil
}

// sweepLease removes the owner's lease user, found in actual, if a run that crashed
// left it (see lease.Sweep): a run with nothing to write takes no lock, so without
// this a crashed run's lease would stay in the user list until the next writing run.
// It costs nothing when there is no lease (the usual case), one fetch when there is
// one, and a delete only for a crashed run's. It never fails the run.
func (f *ApplyFlags) sweepLease(ctx context.Context, env *Env, s *session, owner string, actual state.Actual) {
	if f.NoLock {
		return
	}
	for _, u := range actual.Users {
		if state.EmailKey(u.Email.Value()) != state.EmailKey(state.LeaseEmail(owner)) {
			continue
		}
		api, clock, err := s.leaseClient()
		if err != nil {
			env.Log.Warn("checking the lock a run left: " + err.Error())
			return
		}
		fresh, err := api.FetchUser(ctx, u.ID) // also reads the server's clock
		if err != nil {
			if !client.IsNotFound(err) {
				env.Log.Warn("checking the lock a run left: " + err.Error())
			}
			return
		}
		swept, err := lease.Sweep(ctx, api, fresh, clock.Now, env.Log)
		if err != nil {
			env.Log.Warn(err.Error())
		}
		if swept {
			if err := s.save(); err != nil {
				env.Log.Error(err.Error())
			}
		}
		return
	}
}
