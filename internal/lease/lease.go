// Package lease keeps two cbk-sync runs from changing one account at the same time,
// across machines, with the one atomic primitive the Partner API offers: a user create
// that meets 409 when its email is taken. The lock is a lease user whose email is
// derived from the owner (state.LeaseEmail); creating it takes the lock, deleting it
// releases it. Its meta names the holder and when the lease expires; the holder
// renews it while it runs, so a crashed holder's lease expires and the next run takes
// it over. Plans never see lease users (state.User.IsLease).
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
	"os"
	"sync"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The meta keys of a lease user, besides the owner marker.
const (
	HolderKey  = "cbkSyncLockHolder"
	ExpiresKey = "cbkSyncLockExpires"
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

// Options tune Acquire.
type Options struct {
	// Owner is the config's owner: one lock per owner scope.
	Owner string
	// Holder names this run in the lease (default: host, process ID and a random part).
	Holder string
	// TTL is how long the lease lasts unless renewed; 0 means DefaultTTL. It is
	// renewed every TTL/3.
	TTL time.Duration
	// Wait is how long Acquire waits for another run's lease to go; 0 fails at once.
	Wait time.Duration
	// Logger gets a line when waiting, renewing fails, or a lease is taken over.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Renew, if set, replaces the renewal timer (for tests): each receive renews.
	Renew <-chan time.Time
}

// HeldError is Acquire's error when another run holds the lease and it did not go
// within Options.Wait.
type HeldError struct {
	Holder  string
	Expires time.Time
	Since   time.Time // when the lease was taken
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("another cbk-sync run holds the lock on this account (holder %q, since %s, expires %s unless renewed)",
		e.Holder, e.Since.UTC().Format(time.RFC3339), e.Expires.UTC().Format(time.RFC3339))
}

// ErrLost is the cause of the context a Lease cancels when it finds its lease gone
// (taken over after it could not renew it in time).
var ErrLost = errors.New("the lock on this account was lost (taken over after it could not be renewed)")

// Lease is a held lock. Release it when the run ends.
type Lease struct {
	api    API
	o      Options
	id     string
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// maxCreates bounds the lease creates of one Acquire whose answers were lost or that
// met a lease released just then.
const maxCreates = 5

// Acquire takes the lease of o.Owner, waiting up to o.Wait for another run's lease to
// be released or to expire. The returned context is ctx, cancelled with ErrLost if the
// lease is ever found gone while held: run everything the lock protects under it.
func Acquire(ctx context.Context, api API, o Options) (*Lease, context.Context, error) {
	if o.Owner == "" {
		return nil, nil, errors.New("lease: no owner")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Holder == "" {
		o.Holder = defaultHolder()
	}
	l := &Lease{api: api, o: o}
	deadline := o.Now().Add(o.Wait)
	email := state.LeaseEmail(o.Owner)
	logged := false
	// The lease is looked up first (one poll, which also finds the API's path family
	// before the first write), then created; 409 or a lost answer looks again.
	for attempt := 1; ; attempt++ {
		u, found, err := l.find(ctx, email)
		if err != nil {
			return nil, nil, fmt.Errorf("taking the lock on this account: looking it up: %w", err)
		}
		if found && holderOf(u) == o.Holder {
			l.id = u.ID // our own create, whose answer was lost
			break
		}
		if found {
			gone, err := l.waitFor(ctx, u, deadline, &logged)
			if err != nil {
				return nil, nil, err
			}
			if !gone {
				return nil, nil, l.held(u)
			}
		}
		if attempt > maxCreates {
			return nil, nil, fmt.Errorf("taking the lock on this account: gave up after %d creates that met another run's lock or lost their answer", maxCreates)
		}
		id, err := api.CreateUser(ctx, l.body(true))
		if err == nil {
			l.id = id
			break
		}
		if client.IsQuota(err) {
			return nil, nil, fmt.Errorf("taking the lock on this account: the lock is a partner user and the account is at its user quota (%w); make room for one user, or pass --no-lock if no other run can start meanwhile", err)
		}
		if !client.IsConflict(err) && !client.IsLost(err) {
			return nil, nil, fmt.Errorf("taking the lock on this account: %w", err)
		}
		// Another run created it first, or our create may have happened: look again.
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l.cancel, l.stop, l.done = cancel, make(chan struct{}), make(chan struct{})
	go l.renew()
	o.Logger.Debug("lock taken", "holder", o.Holder, "lease_user", l.id)
	return l, lctx, nil
}

// waitFor waits until the lease u is released or expired (then deleted), polling it by
// fetch, which is not a poll of the API's rate limit. It returns false when the
// deadline passed first.
func (l *Lease) waitFor(ctx context.Context, u state.User, deadline time.Time, logged *bool) (bool, error) {
	backoff := 100 * time.Millisecond
	for {
		if expired(u, l.o.Now()) {
			// Deleting by ID removes this lease only: if another run took it over
			// first, its new lease has another ID and our delete finds nothing (404).
			if err := l.api.DeleteUser(ctx, u.ID); err != nil {
				return false, fmt.Errorf("taking over the expired lock of %q: %w", holderOf(u), err)
			}
			l.o.Logger.Warn("took over an expired lock", "holder", holderOf(u), "expired", expiresOf(u).UTC().Format(time.RFC3339))
			return true, nil
		}
		left := deadline.Sub(l.o.Now())
		if left <= 0 {
			return false, nil
		}
		if !*logged {
			*logged = true
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
	return &HeldError{Holder: holderOf(u), Expires: expiresOf(u), Since: time.UnixMilli(u.CreatedAt)}
}

func (l *Lease) find(ctx context.Context, email string) (state.User, bool, error) {
	for u, err := range l.api.ListUsers(ctx, client.ListOptions{Email: email}) {
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
		Meta:        state.Some(state.Meta{state.OwnerKey: l.o.Owner, HolderKey: l.o.Holder, ExpiresKey: expires}),
	}
}

// renew extends the lease every TTL/3 until Release. A renewal that finds the lease
// gone (404: taken over after it had expired) cancels the run's context; one that
// fails otherwise is tried again at the next tick, and the run is cancelled once the
// lease has expired without a renewal.
func (l *Lease) renew() {
	defer close(l.done)
	tick := l.o.Renew
	if tick == nil {
		t := time.NewTicker(l.o.TTL / 3)
		defer t.Stop()
		tick = t.C
	}
	// A renewal in flight (or waiting for the client's pause after a 429) is cancelled
	// by Release, which must never wait for it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	expires := l.o.Now().Add(l.o.TTL)
	for {
		select {
		case <-l.stop:
			return
		case <-tick:
		}
		sent := l.o.Now()
		err := l.api.UpdateUser(ctx, l.id, l.body(false))
		switch {
		case ctx.Err() != nil:
			return // released meanwhile
		case err == nil:
			expires = sent.Add(l.o.TTL)
		case client.IsNotFound(err):
			l.o.Logger.Error("the lock was taken over: no new change starts", "lease_user", l.id)
			l.cancel(ErrLost)
			return
		default:
			l.o.Logger.Warn("renewing the lock failed; retrying", "error", err)
			if l.o.Now().After(expires) {
				l.o.Logger.Error("the lock expired without renewal: no new change starts")
				l.cancel(ErrLost)
				return
			}
		}
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
		l.cancel(nil)
		if client.IsNotFound(err) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("releasing the lock on this account failed (it expires by itself within %s): %w", l.o.TTL, err)
		}
	})
	return err
}

func holderOf(u state.User) string {
	s, _ := u.Meta.Value()[HolderKey].(string)
	return s
}

// expiresOf reads the lease's expiry; a lease without a readable one counts as
// expired long ago (a lease user made by hand, or damaged, must not block forever).
func expiresOf(u state.User) time.Time {
	s, _ := u.Meta.Value()[ExpiresKey].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func expired(u state.User, now time.Time) bool { return now.After(expiresOf(u)) }

func defaultHolder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// The real client is what a lease is written for.
var _ API = (*client.Client)(nil)
