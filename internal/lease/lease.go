// Package lease keeps two cbk-sync runs from changing one account at the same time,
// across machines, with the one atomic primitive the Partner API offers: a user create
// that meets 409 when its email is taken. The lock is a lease user whose email is
// derived from the owner (state.LeaseEmail); creating it takes the lock, deleting it
// releases it. Its meta names the holder and when the lease expires; the holder
// renews it while it runs, so a crashed holder's lease expires and the next run takes
// it over. Plans never see lease users (state.User.IsLease). While held, the lease
// fences the run's writes (Check).
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The meta keys of a lease user, besides the owner marker.
const (
	HolderKey  = "cbkSyncLockHolder"
	ExpiresKey = "cbkSyncLockExpires" // for people; expiry is judged from updatedAt + TTL
	TTLKey     = "cbkSyncLockTTL"
)

// API is the part of the Partner API client a lease uses; *client.Client has it.
type API interface {
	CreateUser(ctx context.Context, f state.UserFields) (string, error)
	UpdateUser(ctx context.Context, id string, f state.UserFields) error
	DeleteUser(ctx context.Context, id string) error
	FetchUser(ctx context.Context, id string) (state.User, error)
	ListUsers(ctx context.Context, o client.ListOptions) iter.Seq2[state.User, error]
}

// DefaultTTL is how long a lease lasts without renewal: long enough that a slow
// network never loses it, short enough that a crashed run's lock clears soon.
const DefaultTTL = 2 * time.Minute

// MaxTTL bounds the TTL a lease may claim: no lease outlives its last renewal by more.
const MaxTTL = DefaultTTL

// Options tune Acquire.
type Options struct {
	// Owner is the config's owner: one lock per owner scope.
	Owner string
	// Holder names this run in the lease (default: host, process ID and a random part).
	Holder string
	// TTL is how long the lease lasts unless renewed; 0 means DefaultTTL, and it is at
	// most MaxTTL. It is renewed every TTL/3.
	TTL time.Duration
	// Wait is how long Acquire waits for another run's lease to go; 0 fails at once.
	Wait time.Duration
	// Logger gets a line when waiting, renewing fails, or a lease is taken over.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ServerNow is the server's clock as last seen (ServerTime.Now); nil or false means
	// unknown, and another run's lease then expires only once this run has seen it
	// unrenewed for its TTL.
	ServerNow func() (time.Time, bool)
	// Renew, if set, replaces the renewal timer (for tests): each receive renews.
	Renew <-chan time.Time
}

// HeldError is Acquire's error when another run holds the lease and it did not go
// within Options.Wait.
type HeldError struct {
	Holder  string
	Expires time.Time // by the server's clock, unless renewed
	Since   time.Time // when the lease was taken
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("another cbk-sync run holds the lock on this account (holder %q, since %s, expires %s unless renewed)",
		e.Holder, e.Since.UTC().Format(time.RFC3339), e.Expires.UTC().Format(time.RFC3339))
}

// Lease is a held lock. Release it when the run ends.
type Lease struct {
	api    API
	o      Options
	id     string
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	renewed time.Time // when the last create or renewal that counted was sent
	lost    error     // set once, for good (see Check)
}

// maxCreates bounds the lease creates of one Acquire whose answers were lost or that
// met a lease released just then.
const maxCreates = 5

// Acquire takes the lease of o.Owner, waiting up to o.Wait for another run's lease to
// be released or to expire. The returned context is ctx, cancelled with an error
// wrapping ErrLost if the lease is ever lost while held: run everything the lock
// protects under it, and fence every write with Check.
func Acquire(ctx context.Context, api API, o Options) (*Lease, context.Context, error) {
	if o.Owner == "" {
		return nil, nil, errors.New("lease: no owner")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	o.TTL = min(o.TTL, MaxTTL)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ServerNow == nil {
		o.ServerNow = func() (time.Time, bool) { return time.Time{}, false }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Holder == "" {
		o.Holder = defaultHolder()
	}
	l := &Lease{api: api, o: o}
	deadline := o.Now().Add(o.Wait)
	w := &waiter{}
	// The lease is created at once (one write when it is free); a 409, or an answer
	// lost, looks it up: it is ours (the answer was lost), or another run's to wait for.
	for attempt := 1; ; attempt++ {
		if attempt > maxCreates {
			return nil, nil, fmt.Errorf("taking the lock on this account: gave up after %d creates that met another run's lock or lost their answer", maxCreates)
		}
		sent := o.Now()
		id, err := api.CreateUser(ctx, l.body(true))
		if err == nil {
			l.id, l.renewed = id, sent
			break
		}
		if client.IsQuota(err) {
			return nil, nil, &QuotaError{Err: err}
		}
		if !client.IsConflict(err) && !client.IsLost(err) {
			return nil, nil, fmt.Errorf("taking the lock on this account: %w", err)
		}
		u, found, err := Find(ctx, api, o.Owner)
		if err != nil {
			return nil, nil, fmt.Errorf("taking the lock on this account: looking it up: %w", err)
		}
		if found && holderOf(u) == o.Holder {
			l.id, l.renewed = u.ID, sent // our own create, whose answer was lost
			break
		}
		if found {
			gone, err := l.waitFor(ctx, u, deadline, w)
			if err != nil {
				return nil, nil, err
			}
			if !gone {
				return nil, nil, l.held(u)
			}
		}
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l.cancel, l.stop, l.done = cancel, make(chan struct{}), make(chan struct{})
	go l.renew()
	o.Logger.Debug("lock taken", "holder", o.Holder, "lease_user", l.id)
	return l, lctx, nil
}

// QuotaError is Acquire's error when the account is at its user quota, so that the
// lease user cannot be created.
type QuotaError struct{ Err error }

func (e *QuotaError) Error() string {
	return fmt.Sprintf("taking the lock on this account: the lock is a partner user and the account is at its user quota (%v)", e.Err)
}

func (e *QuotaError) Unwrap() error { return e.Err }

// waiter follows one lease while Acquire waits for it: when it was first seen as it
// is, by this run's clock.
type waiter struct {
	id      string
	renewed int64
	seenAt  time.Time
	logged  bool
}

// expired reports whether the lease u may be taken over: the server's clock is past
// its updatedAt plus its TTL, or this run has seen it unrenewed for its TTL, or its
// holder is a process of this host that no longer exists. Why is the second result.
func (l *Lease) expired(u state.User, w *waiter) (bool, string) {
	if ok, why := expiredNow(u, l.o.Holder, l.o.ServerNow); ok {
		return true, why
	}
	if w.id != u.ID || w.renewed != u.UpdatedAt {
		w.id, w.renewed, w.seenAt = u.ID, u.UpdatedAt, l.o.Now()
	}
	if elapsed(w.seenAt, l.o.Now()) > claimedTTL(u) {
		return true, "not renewed for its TTL"
	}
	return false, ""
}

// waitFor waits until the lease u is released or expired (then deleted), polling it by
// fetch, which is not a poll of the API's rate limit. It returns false when the
// deadline passed first.
func (l *Lease) waitFor(ctx context.Context, u state.User, deadline time.Time, w *waiter) (bool, error) {
	backoff := 100 * time.Millisecond
	for {
		if ok, why := l.expired(u, w); ok {
			// Deleting by ID removes this lease only: if another run took it over
			// first, its new lease has another ID and our delete finds nothing (404).
			if err := l.api.DeleteUser(ctx, u.ID); err != nil && !client.IsNotFound(err) {
				return false, fmt.Errorf("taking over the lock of %q: %w", holderOf(u), err)
			}
			l.o.Logger.Warn("took over a lock", "holder", holderOf(u), "why", why, "last_renewed", renewedAt(u).UTC().Format(time.RFC3339))
			return true, nil
		}
		left := deadline.Sub(l.o.Now())
		if left <= 0 {
			return false, nil
		}
		if !w.logged {
			w.logged = true
			l.o.Logger.Info("waiting for another run's lock", "holder", holderOf(u), "timeout", l.o.Wait.String())
		}
		t := time.NewTimer(min(backoff, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
		nu, err := l.api.FetchUser(ctx, u.ID)
		if client.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("waiting for the lock: %w", err)
		}
		u = nu
	}
}

func (l *Lease) held(u state.User) error {
	return &HeldError{Holder: holderOf(u), Expires: expiresAt(u), Since: time.UnixMilli(u.CreatedAt)}
}

// Find looks up the lease of owner: the lease user, and whether there is one.
func Find(ctx context.Context, api API, owner string) (state.User, bool, error) {
	email := state.LeaseEmail(owner)
	for u, err := range api.ListUsers(ctx, client.ListOptions{Email: email}) {
		if err != nil {
			return state.User{}, false, err
		}
		if state.EmailKey(u.Email.Value()) == state.EmailKey(email) {
			return u, true, nil
		}
	}
	return state.User{}, false, nil
}

// body is the lease user's create body, or (create false) the renewal's.
func (l *Lease) body(create bool) state.UserFields {
	expires := l.o.Now().Add(l.o.TTL).UTC().Format(time.RFC3339Nano)
	if !create {
		return state.UserFields{Meta: state.Some(state.Meta{ExpiresKey: expires}), MetaMerge: true}
	}
	return state.UserFields{
		Email:       state.Some(state.LeaseEmail(l.o.Owner)),
		Name:        state.Some("cbk-sync lock"),
		Description: state.Some(fmt.Sprintf("Held by a cbk-sync run for owner %s; deleted when it ends, taken over once expired. Not a real user.", l.o.Owner)),
		Meta:        state.Some(state.Meta{state.OwnerKey: l.o.Owner, HolderKey: l.o.Holder, ExpiresKey: expires, TTLKey: l.o.TTL.String()}),
	}
}

// Release stops renewing (cancelling a renewal in flight) and deletes the lease user
// within ctx: the caller bounds it (an interrupted run does not wait long for it; a
// lease not deleted expires by itself). It is safe to call twice.
func (l *Lease) Release(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		// The lease's own context (which a caller may pass) ends only once the lease
		// is deleted.
		err = l.api.DeleteUser(ctx, l.id)
		l.lose(errReleased)
		if client.IsNotFound(err) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("releasing the lock on this account failed (it expires by itself within %s): %w", l.o.TTL, err)
		}
	})
	return err
}

// errReleased closes the fence of a released lease; the run's context is cancelled
// with it (not ErrLost: nothing was lost).
var errReleased = errors.New("the lock on this account was released")

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// The real client is what a lease is written for.
var _ API = (*client.Client)(nil)

// expiredNow reports whether the lease u may be taken over at once, as seen by the run
// self: its holder is a process of this host that no longer exists, or the server's
// clock is past its updatedAt plus its TTL.
func expiredNow(u state.User, self string, serverNow func() (time.Time, bool)) (bool, string) {
	if holderGone(u, self) {
		return true, "its holder, a process of this host, no longer exists"
	}
	if now, ok := serverNow(); ok && now.After(expiresAt(u)) {
		return true, "expired by the server's clock"
	}
	return false, ""
}

// Sweep deletes the lease user u of a run that crashed (expired by the server's clock,
// or held by a process of this host that no longer exists), found by a run that has
// nothing to write and so takes no lock: no lease of a crashed run stays in the
// account's user list. It reports whether it deleted u; a live lease is left alone.
func Sweep(ctx context.Context, api API, u state.User, serverNow func() (time.Time, bool), logger *slog.Logger) (bool, error) {
	ok, why := expiredNow(u, defaultHolder(), serverNow)
	if !ok {
		return false, nil
	}
	// By ID: a lease taken since has another ID and is not touched.
	if err := api.DeleteUser(ctx, u.ID); err != nil && !client.IsNotFound(err) {
		return false, fmt.Errorf("removing the lock a crashed run left: %w", err)
	}
	logger.Warn("removed the lock a crashed run left", "holder", holderOf(u), "why", why, "last_renewed", renewedAt(u).UTC().Format(time.RFC3339))
	return true, nil
}
