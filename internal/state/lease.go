package state

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// The lease user is how concurrent runs exclude each other (see internal/lease): a
// partner user whose email is derived from the owner, so that the API's unique-email
// rule lets exactly one run create it. Its domain is under .invalid, which RFC 6761
// reserves so that no real address can ever use it, while every email validator the
// platform could use (a syntax check with an alphabetic TLD) accepts it.
const (
	// LeaseDomain is the domain of every lease user's email.
	LeaseDomain = "lock.cbk-sync.invalid"
	// leasePrefix starts the local part; the owner follows the plus sign.
	leasePrefix = "cbk-sync-lock+"
)

// AdoptionScope is the lease scope of adoptions: a run that adopts users (unmanaged,
// or another owner's with --takeover) holds it besides its own owner's lease, so that
// two owners cannot both adopt one user: each owner's lock excludes only that owner's
// runs, and the platform has no compare-and-set on a user's meta. It can never be an
// owner's (owners are a-z, 0-9 and -).
const AdoptionScope = "_adoptions"

// LeaseEmail is the email of the lease user of owner. The platform allows 64 bytes
// before the "@" (EmailProblem) and an owner may have 63 characters, so a long owner is
// cut and a hash of the whole owner appended: the address stays valid and distinct per
// owner.
func LeaseEmail(owner string) string {
	local := leasePrefix + owner
	if len(local) > maxLocal {
		sum := sha256.Sum256([]byte(owner))
		h := hex.EncodeToString(sum[:4])
		local = local[:maxLocal-len(h)-1] + "-" + h
	}
	return local + "@" + LeaseDomain
}

// maxLocal is the platform's limit on the part of an email before the "@".
const maxLocal = 64

// IsLeaseEmail reports whether email is a lease user's, of any owner: such a user is
// never planned, exported, adopted or deleted by a plan.
func IsLeaseEmail(email string) bool {
	k := EmailKey(email)
	return strings.HasPrefix(k, leasePrefix) && strings.HasSuffix(k, "@"+LeaseDomain)
}

// IsLease reports whether u is a lease user.
func (u User) IsLease() bool { return IsLeaseEmail(u.Email.Value()) }
