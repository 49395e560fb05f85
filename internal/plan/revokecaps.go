package plan

import (
	"fmt"
	"strings"
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
