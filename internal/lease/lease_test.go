package lease_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/lease"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

const owner = "acme"

func setup(t *testing.T) (*emulator.Emulator, *client.Client) {
	t.Helper()
	emu, err := emulator.New(emulator.Options{Token: "sk-test"})
	require.NoError(t, err)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	api, err := client.New(client.Options{BaseURL: srv.URL, Token: state.Secret("sk-test"), RetryBase: time.Millisecond, Paths: client.PathsPartner})
	require.NoError(t, err)
	return emu, api
}

func leases(emu *emulator.Emulator) []state.User {
	var out []state.User
	for _, u := range emu.Users() {
		if u.IsLease() {
			out = append(out, u)
		}
	}
	return out
}

// seedLease adds a lease last written (renewed) at renewed, which claims to expire in
// 2099: the claim is never believed.
func seedLease(t *testing.T, emu *emulator.Emulator, holder string, renewed time.Time) state.User {
	t.Helper()
	ms := renewed.UnixMilli()
	u, err := emu.PutUser(state.User{CreatedAt: ms, UpdatedAt: ms, Email: state.Some(state.LeaseEmail(owner)), Meta: state.Some(state.Meta{
		state.OwnerKey: owner, lease.HolderKey: holder, lease.ExpiresKey: "2099-01-01T00:00:00Z"})})
	require.NoError(t, err)
	return u
}

// serverNow is the emulator's clock as a lease sees the server's (ServerTime.Now).
func serverNow() (time.Time, bool) { return time.Now(), true }

func TestAcquireAndRelease(t *testing.T) {
	emu, api := setup(t)
	l, ctx, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: "me"})
	require.NoError(t, err)
	got := leases(emu)
	require.Len(t, got, 1)
	assert.Equal(t, "cbk-sync-lock+acme@lock.cbk-sync.invalid", got[0].Email.Value())
	m := got[0].Meta.Value()
	assert.Equal(t, owner, m[state.OwnerKey])
	assert.Equal(t, "me", m[lease.HolderKey])
	exp, err := time.Parse(time.RFC3339Nano, m[lease.ExpiresKey].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(lease.DefaultTTL), exp, time.Minute)
	assert.Equal(t, "2m0s", m[lease.TTLKey])
	assert.Equal(t, map[string]int64{"user.create": 1}, nonZero(emu.Counts()), "a free lock costs its create alone")

	// Held: a second run gives up at once and says who holds it.
	_, _, err = lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: "other"})
	var held *lease.HeldError
	require.ErrorAs(t, err, &held)
	assert.Equal(t, "me", held.Holder)
	// Another owner scope has its own lock.
	l2, _, err := lease.Acquire(context.Background(), api, lease.Options{Owner: "other-team"})
	require.NoError(t, err)
	require.NoError(t, l2.Release(context.Background()))

	require.NoError(t, l.Release(context.Background()))
	require.NoError(t, l.Release(context.Background()), "twice is fine")
	assert.Empty(t, leases(emu))
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.NotErrorIs(t, context.Cause(ctx), lease.ErrLost)
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// A crashed holder's lease is taken over once expired by the server's clock, whatever
// expiry it claims; a live one is held until its updatedAt plus its TTL, never beyond.
func TestExpiredLeaseIsTakenOver(t *testing.T) {
	emu, api := setup(t)
	old := seedLease(t, emu, "crashed", time.Now().Add(-lease.DefaultTTL-time.Second))
	l, _, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: "me", ServerNow: serverNow})
	require.NoError(t, err)
	got := leases(emu)
	require.Len(t, got, 1)
	assert.NotEqual(t, old.ID, got[0].ID)
	assert.Equal(t, "me", got[0].Meta.Value()[lease.HolderKey])
	require.NoError(t, l.Release(context.Background()))

	// A fresh lease claiming 2099 (a fast clock, a forged plan) holds the lock until
	// its last write plus the TTL it claims (at most MaxTTL), and says so.
	live := seedLease(t, emu, "fast-clock", time.Now())
	_, _, err = lease.Acquire(context.Background(), api, lease.Options{Owner: owner, ServerNow: serverNow})
	var held *lease.HeldError
	require.ErrorAs(t, err, &held)
	assert.Equal(t, time.UnixMilli(live.UpdatedAt).Add(lease.DefaultTTL), held.Expires)
	assert.Contains(t, err.Error(), "expires "+time.UnixMilli(live.UpdatedAt).Add(lease.DefaultTTL).UTC().Format(time.RFC3339))
}

// Without the server's clock, a waiting run takes a lease over once it has seen it
// unrenewed for the TTL the lease claims.
func TestUnrenewedLeaseIsTakenOverAfterItsTTL(t *testing.T) {
	emu, api := setup(t)
	_, err := emu.PutUser(state.User{Email: state.Some(state.LeaseEmail(owner)), Meta: state.Some(state.Meta{
		state.OwnerKey: owner, lease.HolderKey: "stalled", lease.TTLKey: "300ms", lease.ExpiresKey: "2099-01-01T00:00:00Z"})})
	require.NoError(t, err)
	start := time.Now()
	l, _, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: "me", Wait: time.Minute})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "not before its TTL")
	require.NoError(t, l.Release(context.Background()))
}

// A lease of a process of this host that no longer exists (a run killed here) is taken
// over at once; one of a live process of this host is not.
func TestLeaseOfAGoneProcessIsTakenOverAtOnce(t *testing.T) {
	emu, api := setup(t)
	host, err := os.Hostname()
	require.NoError(t, err)
	gone := exec.Command("true")
	require.NoError(t, gone.Run()) // exited and reaped: its PID names no process
	seedLease(t, emu, fmt.Sprintf("%s/%d/dead", host, gone.Process.Pid), time.Now())
	me := fmt.Sprintf("%s/%d/me", host, os.Getpid())
	l, _, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: me, ServerNow: serverNow})
	require.NoError(t, err)
	require.NoError(t, l.Release(context.Background()))

	seedLease(t, emu, fmt.Sprintf("%s/%d/parent", host, os.Getppid()), time.Now())
	_, _, err = lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: me, ServerNow: serverNow})
	var held *lease.HeldError
	require.ErrorAs(t, err, &held, "a live process's lease is held")
}

// Two runs that both find the same expired lease: each deletes it by its ID, and the
// create decides (409 for the loser, whose delete cannot touch the winner's new lease).
// Exactly one holds the lock, every time.
func TestTwoRunsTakingOverOneExpiredLease(t *testing.T) {
	emu, api := setup(t)
	for trial := range 20 {
		seedLease(t, emu, "crashed", time.Now().Add(-lease.DefaultTTL-time.Minute))
		var wg sync.WaitGroup
		results := make([]error, 2)
		held := make([]*lease.Lease, 2)
		for i := range 2 {
			wg.Go(func() {
				held[i], _, results[i] = lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: fmt.Sprintf("run%d", i), ServerNow: serverNow})
			})
		}
		wg.Wait()
		var winners int
		for i, err := range results {
			var he *lease.HeldError
			switch {
			case err == nil:
				winners++
			case errors.As(err, &he):
				assert.NotEqual(t, "crashed", he.Holder, "trial %d: the loser meets the winner's lease", trial)
			default:
				t.Fatalf("trial %d run %d: %v", trial, i, err)
			}
		}
		require.Equal(t, 1, winners, "trial %d: %v", trial, results)
		require.Len(t, leases(emu), 1)
		for _, l := range held {
			if l != nil {
				require.NoError(t, l.Release(context.Background()))
			}
		}
		require.Empty(t, leases(emu))
	}
}

// A waiting run takes the lease as soon as the holder releases it.
func TestWaitForRelease(t *testing.T) {
	emu, api := setup(t)
	first, _, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Holder: "first"})
	require.NoError(t, err)
	type result struct {
		l   *lease.Lease
		err error
	}
	done := make(chan result, 1)
	waiting := &fetchSignal{API: api, fetched: make(chan struct{})}
	go func() {
		l, _, err := lease.Acquire(context.Background(), waiting, lease.Options{Owner: owner, Holder: "second", Wait: time.Minute})
		done <- result{l, err}
	}()
	// The second run is waiting once it polls the lease by fetch (which is not a poll
	// of the rate limit); then the first releases.
	select {
	case <-waiting.fetched:
	case r := <-done:
		t.Fatalf("the second run did not wait: %v", r.err)
	}
	require.NoError(t, first.Release(context.Background()))
	r := <-done
	require.NoError(t, r.err)
	got := leases(emu)
	require.Len(t, got, 1)
	assert.Equal(t, "second", got[0].Meta.Value()[lease.HolderKey])
	assert.Equal(t, int64(1), emu.Counts()["user.list"], "one lookup after the create met 409: waiting polls by fetch")
	require.NoError(t, r.l.Release(context.Background()))
}

// Renewal moves the expiry; a lease found gone at renewal cancels the run's context.
func TestRenewalAndLoss(t *testing.T) {
	emu, api := setup(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := make(chan time.Time)
	l, ctx, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Now: clock, Renew: tick, TTL: time.Minute})
	require.NoError(t, err)
	expiresAt := func() string { return leases(emu)[0].Meta.Value()[lease.ExpiresKey].(string) }
	before := expiresAt()
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	tick <- now
	tick <- now // the second send waits for the first renewal to finish
	assert.NotEqual(t, before, expiresAt())
	assert.Equal(t, now.Add(time.Minute).UTC().Format(time.RFC3339Nano), expiresAt())
	assert.NoError(t, ctx.Err())
	assert.Len(t, leases(emu)[0].Meta.Value(), 4, "holder, expiry, TTL and marker: the renewal merges")

	// Taken over behind its back (as after a long pause): the next renewal finds it gone.
	require.NoError(t, api.DeleteUser(context.Background(), leases(emu)[0].ID))
	select {
	case tick <- now:
		<-ctx.Done()
	case <-ctx.Done(): // the renewal still under way from the second tick found it gone
	}
	assert.ErrorIs(t, context.Cause(ctx), lease.ErrLost)
	require.NoError(t, l.Release(context.Background()))
}

// fetchSignal closes fetched at the first FetchUser.
type fetchSignal struct {
	lease.API
	fetched chan struct{}
	once    sync.Once
}

func (a *fetchSignal) FetchUser(ctx context.Context, id string) (state.User, error) {
	a.once.Do(func() { close(a.fetched) })
	return a.API.FetchUser(ctx, id)
}

// lostCreate makes the lease's create happen but loses its answer.
type lostCreate struct {
	lease.API
	once sync.Once
}

func (a *lostCreate) CreateUser(ctx context.Context, f state.UserFields) (string, error) {
	id, err := a.API.CreateUser(ctx, f)
	lost := false
	a.once.Do(func() { lost = true })
	if err == nil && lost {
		return "", &client.LostAnswerError{Op: client.OpUserCreate, Err: errors.New("connection reset")}
	}
	return id, err
}

// A create whose answer was lost is found again by its holder ID: no second lease, no
// waiting for itself.
func TestLostCreateAnswer(t *testing.T) {
	emu, api := setup(t)
	l, _, err := lease.Acquire(context.Background(), &lostCreate{API: api}, lease.Options{Owner: owner, Holder: "me"})
	require.NoError(t, err)
	require.Len(t, leases(emu), 1)
	assert.Equal(t, int64(1), emu.Counts()["user.create"])
	require.NoError(t, l.Release(context.Background()))
	assert.Empty(t, leases(emu))
}

func TestLeaseUserAtQuota(t *testing.T) {
	emu, api := setup(t)
	emu.SetFaults(emulator.Faults{UserQuota: 1})
	_, err := emu.PutUser(state.User{Email: state.Some("a@acme.test")})
	require.NoError(t, err)
	_, _, err = lease.Acquire(context.Background(), api, lease.Options{Owner: owner})
	var quota *lease.QuotaError
	require.ErrorAs(t, err, &quota)
}

// The fence (Check) is open while the lease has more than a quarter of its TTL left by
// the holder's own clock, counted from the sending of its last renewal; after that it
// is closed for good and the run's context is cancelled, with no renewal needed to
// find out (a run stalled past its lease finds it closed the moment it resumes).
func TestFenceClosesBeforeTheLeaseMayExpire(t *testing.T) {
	emu, api := setup(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tick := make(chan time.Time)
	l, ctx, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner, Now: clock, Renew: tick, TTL: time.Minute})
	require.NoError(t, err)
	require.NoError(t, l.Check())
	advance(30 * time.Second)
	tick <- now
	tick <- now // the second send waits for the first renewal to finish
	advance(44 * time.Second)
	require.NoError(t, l.Check(), "44s after a renewal, 15s of margin are left")
	advance(time.Second)
	err = l.Check()
	require.ErrorIs(t, err, lease.ErrLost)
	assert.Contains(t, err.Error(), "may have expired")
	<-ctx.Done()
	assert.ErrorIs(t, context.Cause(ctx), lease.ErrLost)
	require.NoError(t, l.Release(context.Background()))
	assert.ErrorIs(t, l.Check(), lease.ErrLost, "closed for good")
	assert.Empty(t, leases(emu))
}

// stuckRenewal is an API whose renewals wait until their context ends, like one
// queued behind an hour's Retry-After pause.
type stuckRenewal struct {
	lease.API
	renewing chan struct{}
}

func (s *stuckRenewal) UpdateUser(ctx context.Context, id string, f state.UserFields) error {
	close(s.renewing)
	<-ctx.Done()
	return ctx.Err()
}

// Release does not wait for a renewal in flight: it cancels it, then deletes the lease
// within the caller's context (it used to wait for the renewal forever).
func TestReleaseCancelsAStuckRenewal(t *testing.T) {
	emu, api := setup(t)
	stuck := &stuckRenewal{API: api, renewing: make(chan struct{})}
	tick := make(chan time.Time, 1)
	l, _, err := lease.Acquire(context.Background(), stuck, lease.Options{Owner: owner, Renew: tick})
	require.NoError(t, err)
	tick <- time.Now()
	<-stuck.renewing
	done := make(chan error, 1)
	go func() { done <- l.Release(context.Background()) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second): // a bound against a hang, not a synchronisation
		t.Fatal("Release waited for the stuck renewal")
	}
	assert.Empty(t, leases(emu), "the lease was deleted")

	// A release whose context has ended leaves the lease to expire, and says so.
	l2, _, err := lease.Acquire(context.Background(), api, lease.Options{Owner: owner})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = l2.Release(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, "it expires by itself")
	assert.Len(t, leases(emu), 1)
}
