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
	revokes, owned := s.TokenRevokes, s.OwnedTokens
	var over []string
	if c.o.MaxTokenRevokes >= 0 && revokes > c.o.MaxTokenRevokes {
		over = append(over, fmt.Sprintf("the plan revokes %d tokens, %d more than --max-token-revokes %d; pass --force-token-revokes to allow it",
			revokes, revokes-c.o.MaxTokenRevokes, c.o.MaxTokenRevokes))
	}
	if c.o.MaxTokenRevokePercent >= 0 && owned >= MinOwnedTokensForPercent && revokes*100 > c.o.MaxTokenRevokePercent*owned {
		allowed := c.o.MaxTokenRevokePercent * owned / 100
		over = append(over, fmt.Sprintf("the plan revokes %d of %d owned tokens (%d%%), more than --max-token-revoke-percent %d allows (%d tokens, so %d over); pass --force-token-revokes to allow it",
			revokes, owned, revokes*100/owned, c.o.MaxTokenRevokePercent, allowed, revokes-allowed))
	}
	if c.o.ForceTokenRevokes {
		for _, r := range over {
			c.warn(strings.Replace(r, "; pass --force-token-revokes to allow it", "; allowed by --force-token-revokes", 1))
		}
		return
	}
	s.Reasons = append(s.Reasons, over...)
}
