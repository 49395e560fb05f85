package apply

import (
	"errors"
	"fmt"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ErrYielded is wrapped by the error of a token create (or rotation) that found, before
// delivering its secret, another token of its name that wins (Options.Unlocked): its
// own token was revoked undelivered, so no two live tokens of one name have both had
// their secrets delivered.
var ErrYielded = errors.New("another token of this name, created first by a concurrent run, was kept")

// yieldsTo decides, for a run without the account lock, whether the new token ct of c
// must give way: it lists the user's tokens and finds another of the same name (not the
// one a rotation replaces) that is confirmed (its secret already delivered), or still
// pending and created no later than ct. Two runs that create one token at once each
// list after their own create, so at least one of them sees the other's token; the
// older one is kept, and on a tie in createdAt both give way (the next run creates it
// again) rather than both delivering.
func (r *runner) yieldsTo(userID string, c plan.Change, ct state.CreatedToken) (state.Token, bool, error) {
	name := c.TokenName
	if name == "" && c.TokenBody != nil {
		name = c.TokenBody.Name.Value()
	}
	var toks []state.Token
	created := ct.CreatedAt
	for t, err := range r.api.ListTokens(r.call, userID, client.ListOptions{}) {
		if err != nil {
			return state.Token{}, false, err
		}
		if t.ID == ct.ID {
			created = t.CreatedAt
			continue
		}
		if t.Name.Value() == name && (c.Action != plan.TokenRotate || t.ID != c.TokenID) {
			toks = append(toks, t)
		}
	}
	for _, t := range toks {
		if !t.Pending() || t.CreatedAt <= created {
			return t, true, nil
		}
	}
	return state.Token{}, false, nil
}

// yieldIfBeaten runs the check of yieldsTo for a run without the lock and, when ct must
// give way or the check cannot be made, revokes ct before its secret is delivered.
func (r *runner) yieldIfBeaten(userID string, c plan.Change, ct state.CreatedToken) error {
	if !r.o.Unlocked {
		return nil
	}
	other, yield, err := r.yieldsTo(userID, c, ct)
	if err == nil && !yield {
		return nil
	}
	why := fmt.Errorf("%w (token %s)", ErrYielded, other.ID)
	if err != nil {
		why = fmt.Errorf("without the account lock, the user's tokens must be listed before a secret is delivered, and listing them failed: %w", err)
	}
	if derr := r.deleteToken(userID, ct.ID); derr != nil {
		return fmt.Errorf("%w; new token %s was not delivered, and revoking it failed: %v (the next run replaces it)", why, ct.ID, derr)
	}
	return fmt.Errorf("%w; new token %s was revoked undelivered", why, ct.ID)
}
