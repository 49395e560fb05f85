package plan

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Options are the command-line choices that change what a plan does.
// A saved plan carries them (JSON), so that apply computes it again with the same.
type Options struct {
	// Takeover adopts users owned by another owner scope instead of refusing.
	Takeover bool `json:"takeover"`
	// MaxDeletes caps user deletions per run; negative means no cap.
	MaxDeletes int `json:"max_deletes"`
	// MaxDeletePercent caps user deletions as a share of the owned users, checked only
	// when at least MinOwnedForPercent users are owned; negative means no cap.
	MaxDeletePercent int `json:"max_delete_percent"`
	// ForceDeletes lifts both caps for one run.
	ForceDeletes bool `json:"force_deletes"`
	// MaxUpdates caps user updates per run; negative means no cap.
	MaxUpdates int `json:"max_updates"`
	// MaxUpdatePercent caps user updates as a share of the owned users, checked only
	// when at least MinOwnedForPercent users are owned; negative means no cap.
	MaxUpdatePercent int `json:"max_update_percent"`
	// ForceUpdates lifts both update caps for one run.
	ForceUpdates bool `json:"force_updates"`
	// MaxTokenRevokes caps token revocations per run (a pending token's is not
	// counted); negative means no cap.
	MaxTokenRevokes int `json:"max_token_revokes"`
	// MaxTokenRevokePercent caps token revocations as a share of the owned tokens of
	// the token lists read, checked only from MinOwnedTokensForPercent owned tokens;
	// negative means no cap.
	MaxTokenRevokePercent int `json:"max_token_revoke_percent"`
	// ForceTokenRevokes lifts both revocation caps for one run.
	ForceTokenRevokes bool `json:"force_token_revokes"`
	// Now is the time token ages (rotateAfter) are measured against.
	Now time.Time `json:"now"`
}

// DefaultOptions returns the options a command uses when no flag changes them.
func DefaultOptions(now time.Time) Options {
	return Options{MaxDeletes: DefaultMaxDeletes, MaxDeletePercent: DefaultMaxDeletePercent,
		MaxUpdates: DefaultMaxUpdates, MaxUpdatePercent: DefaultMaxUpdatePercent,
		MaxTokenRevokes: DefaultMaxTokenRevokes, MaxTokenRevokePercent: DefaultMaxTokenRevokePercent, Now: now}
}

// Compute returns the plan that makes the remote state a equal to the desired state d.
// It is pure and deterministic: the same inputs, in any order, give the same plan.
//
// Lease users (state.User.IsLease) are not part of the state a plan manages: they are
// left out before anything is matched or counted.
func Compute(d state.Desired, a state.Actual, o Options) (Plan, error) {
	c := computer{d: d, a: a, o: o, owner: d.Owner, ownedOverride: -1}
	return c.run()
}

// computer is one computation of a plan: its inputs, the plan as it grows, and what
// the safety checks count.
type computer struct {
	d     state.Desired
	a     state.Actual
	o     Options
	owner string
	plan  Plan
	// index finds the remote users by identity (run builds it).
	index    *state.UserIndex
	warnings []string
	// noAlias counts the user updates and adoptions of users that declare no alias:
	// each clears whatever alias the user had.
	noAlias int
	// Set when a saved plan is computed again from part of the remote state (see
	// Saved.Verify): ownedOverride, when not negative, is the number of owned users to check
	// the delete caps against; partialTokens plans no token change for a user whose
	// token list was not read again, instead of failing with ErrTokensNotRead.
	ownedOverride int
	partialTokens bool
	// countUnchecked counts in Plan.TokensUnchecked the users partialTokens left
	// unchecked (ComputePartial).
	countUnchecked bool
	// needTokens are the released users whose token lists were not read.
	needTokens []string
	// ownedTokens counts the owned tokens (not pending) of the token lists planned.
	ownedTokens int
}

// run computes the plan: each declared user matched and planned (match), the owned
// users no file declares (undeclared), then the safety checks (safety), and sorts
// the result so that the order of the inputs does not matter.
func (c *computer) run() (Plan, error) {
	if c.owner == "" {
		return Plan{}, errors.New("plan: desired state has no owner")
	}
	users := withoutLeases(c.a.Users)
	c.index = state.NewUserIndex(users, c.d.ExternalIDKey)
	owners := make([]ownership, len(users))
	ownedCount := 0
	for i := range users {
		owners[i], _ = c.ownershipOf(users[i].Meta)
		if owners[i] == owned {
			ownedCount++
		}
	}

	matchedBy, emailCreates, err := c.match(users, owners)
	if err != nil {
		return Plan{}, err
	}
	c.plan.Account = census(owners, matchedBy)
	deletes, unmatchedOwned := c.undeclared(users, owners, matchedBy)
	c.emailChangeWarning(emailCreates, unmatchedOwned)

	if err := c.tokensNeeded(); err != nil {
		return Plan{}, err
	}
	if c.ownedOverride >= 0 {
		ownedCount = c.ownedOverride
	}
	c.safety(deletes, ownedCount)
	c.aliasWarning()

	slices.SortFunc(c.plan.Users, func(x, y UserPlan) int {
		return cmp.Or(strings.Compare(x.Identity.Key(), y.Identity.Key()), strings.Compare(x.UserID, y.UserID))
	})
	slices.SortFunc(c.plan.Orphans, func(x, y Orphan) int {
		return cmp.Or(strings.Compare(x.Identity.Key(), y.Identity.Key()), strings.Compare(x.UserID, y.UserID))
	})
	slices.Sort(c.warnings)
	c.plan.Warnings = slices.Compact(c.warnings)
	slices.Sort(c.plan.Safety.Reasons)
	slices.Sort(c.plan.Safety.Foreign)

	c.plan.Owner = c.owner
	c.plan.Fingerprint, c.plan.TokenUsers = fingerprint(Dependencies(c.a, &c.plan))
	if c.plan.Users == nil {
		c.plan.Users = []UserPlan{}
	}
	if c.plan.Orphans == nil {
		c.plan.Orphans = []Orphan{}
	}
	if c.plan.Warnings == nil {
		c.plan.Warnings = []string{}
	}
	return c.plan, nil
}

func (c *computer) warn(s string) { c.warnings = append(c.warnings, s) }
