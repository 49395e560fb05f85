package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/lease"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// leaseAPI is the client as the account lock sees it, counting the lock's renewals:
// each is one user update that no plan asked for, so a sync that holds the lock for
// more than TTL/3 makes that many more user.update calls than it planned (README.md,
// "Performance": "plus one user update every 40 s of a long run").
type leaseAPI struct {
	lease.API
	renewals atomic.Int64
}

func (a *leaseAPI) UpdateUser(ctx context.Context, id string, f state.UserFields) error {
	a.renewals.Add(1)
	return a.API.UpdateUser(ctx, id, f)
}

// renewalPeriod is how often a lease of ttl is renewed (lease.Options.TTL: every TTL/3).
func renewalPeriod(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = lease.DefaultTTL
	}
	return ttl / 3
}

// checkRenewals compares the renewals of a lock held for held with its period: at
// most one per full period (the ticker starts after the hold began and stops before
// it ends), and at least half that many: a ticker drops the ticks a starved process
// could not take in time, but a lock renewed less often than that is not renewing.
func checkRenewals(r *run, renewals int64, held, ttl time.Duration) {
	period := renewalPeriod(ttl)
	most := int64(held / period)
	if renewals > most || renewals < most/2 {
		r.failf("the lock was renewed %d times while held %s, want %d..%d (one user update every %s, TTL/3)",
			renewals, held.Round(time.Millisecond), most/2, most, period)
	}
}
