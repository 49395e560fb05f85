package plan

import (
	"fmt"
	"strings"
)

// Defaults of the delete caps, as documented for --max-deletes and --max-delete-percent.
const (
	DefaultMaxDeletes       = 10
	DefaultMaxDeletePercent = 25
	// DefaultMaxUpdates is no absolute cap on updates: the percentage is what catches
	// an edit gone wrong (octoDNS's 30% default), while a deliberate change to many
	// users of a large account stays possible.
	DefaultMaxUpdates       = -1
	DefaultMaxUpdatePercent = 30
	// MinOwnedForPercent is the number of owned users from which the percentage cap
	// applies: below it a single delete would already be a large share.
	MinOwnedForPercent = 10
)

// Defaults of the token revocation caps, as documented for --max-token-revokes and
// --max-token-revoke-percent. Revoking a token cuts off whatever uses it as surely as
// deleting its user, so a mass revocation is capped like a mass delete.
const (
	DefaultMaxTokenRevokes       = 20
	DefaultMaxTokenRevokePercent = 25
	// MinOwnedTokensForPercent is the number of owned tokens from which the
	// percentage cap applies: a user has a few tokens, so a cleanup of a small account
	// (the undeclared tokens of a handful of users) is routine, and the count cap
	// guards it.
	MinOwnedTokensForPercent = 40
)

// safety decides whether the plan may run: the delete caps, the update caps and the
// token revocation caps, on top of the refusals met while planning (refuse).
func (c *computer) safety(deletes, ownedCount int) {
	s := &c.plan.Safety
	s.Deletes, s.Owned = deletes, ownedCount
	for i := range c.plan.Users {
		// A release is counted as an update: it writes to a user, and a mistake in the
		// files (a user dropped by accident) would release many at once.
		if a := c.plan.Users[i].UserAction(); a == UserUpdate || a == UserRelease {
			s.Updates++
		}
	}
	c.updateCaps(s.Updates, ownedCount)
	c.tokenRevokeCaps()
	var over []string
	if c.o.MaxDeletes >= 0 && deletes > c.o.MaxDeletes {
		over = append(over, fmt.Sprintf("the plan deletes %d users, more than --max-deletes %d; pass --force-deletes to allow it", deletes, c.o.MaxDeletes))
	}
	if c.o.MaxDeletePercent >= 0 && ownedCount >= MinOwnedForPercent && deletes*100 > c.o.MaxDeletePercent*ownedCount {
		over = append(over, fmt.Sprintf("the plan deletes %d of %d owned users (%d%%), more than --max-delete-percent %d; pass --force-deletes to allow it",
			deletes, ownedCount, deletes*100/ownedCount, c.o.MaxDeletePercent))
	}
	if c.o.ForceDeletes {
		for _, r := range over {
			c.warn(strings.Replace(r, "; pass --force-deletes to allow it", "; allowed by --force-deletes", 1))
		}
	} else {
		s.Reasons = append(s.Reasons, over...)
	}
	s.Safe = len(s.Reasons) == 0
}

// updateCaps checks the user updates against --max-updates and --max-update-percent,
// as the delete caps check deletions: over a cap, the plan is unsafe, and the reason
// says which cap and by how much; --force-updates turns that into a warning.
func (c *computer) updateCaps(updates, ownedCount int) {
	c.checkCaps(countCap{verb: "updates", noun: "users", n: updates, owned: ownedCount,
		max: c.o.MaxUpdates, maxFlag: "--max-updates",
		percent: c.o.MaxUpdatePercent, percentFlag: "--max-update-percent", minOwned: MinOwnedForPercent,
		force: c.o.ForceUpdates, forceFlag: "--force-updates"})
}

// refuse makes the plan unsafe, for reason (a user or token of another owner without
// --takeover).
func (c *computer) refuse(reason string) {
	c.plan.Safety.Reasons = append(c.plan.Safety.Reasons, reason)
}

// tokenRevokeCaps counts the revocations that cut something off (every token_revoke
// but that of a pending token, whose secret nobody ever had) and the owned tokens of
// the token lists read, and checks them against --max-token-revokes and
// --max-token-revoke-percent as the delete caps check deletions: over a cap the plan is
// unsafe, and the reason says which cap and by how much; --force-token-revokes turns
// that into a warning.
func (c *computer) tokenRevokeCaps() {
	s := &c.plan.Safety
	s.TokenRevokes, s.OwnedTokens = 0, c.ownedTokens
	for i := range c.plan.Users {
		for _, ch := range c.plan.Users[i].Changes {
			if ch.Action == TokenRevoke && ch.Reason != ReasonPending {
				s.TokenRevokes++
			}
		}
	}
	c.checkCaps(countCap{verb: "revokes", noun: "tokens", n: s.TokenRevokes, owned: s.OwnedTokens,
		max: c.o.MaxTokenRevokes, maxFlag: "--max-token-revokes",
		percent: c.o.MaxTokenRevokePercent, percentFlag: "--max-token-revoke-percent", minOwned: MinOwnedTokensForPercent,
		force: c.o.ForceTokenRevokes, forceFlag: "--force-token-revokes"})
}

// countCap is one kind of change held to a count and a share of the owned objects
// (user updates, token revocations), with the flags that set and lift the caps.
type countCap struct {
	verb, noun             string // "updates", "users"
	n, owned               int
	max                    int
	maxFlag                string
	percent, minOwned      int
	percentFlag, forceFlag string
	force                  bool
}

// checkCaps checks k.n against its caps, as the delete caps check deletions: over a
// cap the plan is unsafe, and the reason says which cap and by how much; the force flag
// turns that into a warning. The percentage applies from k.minOwned owned objects.
func (c *computer) checkCaps(k countCap) {
	pass := "; pass " + k.forceFlag + " to allow it"
	var over []string
	if k.max >= 0 && k.n > k.max {
		over = append(over, fmt.Sprintf("the plan %s %d %s, %d more than %s %d%s", k.verb, k.n, k.noun, k.n-k.max, k.maxFlag, k.max, pass))
	}
	if k.percent >= 0 && k.owned >= k.minOwned && k.n*100 > k.percent*k.owned {
		allowed := k.percent * k.owned / 100
		over = append(over, fmt.Sprintf("the plan %s %d of %d owned %s (%d%%), more than %s %d allows (%d %s, so %d over)%s",
			k.verb, k.n, k.owned, k.noun, k.n*100/k.owned, k.percentFlag, k.percent, allowed, k.noun, k.n-allowed, pass))
	}
	if k.force {
		for _, r := range over {
			c.warn(strings.Replace(r, pass, "; allowed by "+k.forceFlag, 1))
		}
		return
	}
	c.plan.Safety.Reasons = append(c.plan.Safety.Reasons, over...)
}
