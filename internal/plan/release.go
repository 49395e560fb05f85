package plan

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ReasonRelease is the Reason of a user_release.
const ReasonRelease = "owned and not declared (prune.users is release): cbk-sync's owner marker is removed, nothing else changes"

// ReasonTokenRelease is the Reason of a token_release.
const ReasonTokenRelease = "owned token of a released user: cbk-sync's markers are removed"

// TokensNeededError is Compute's error when the plan releases owned users whose token
// lists the actual state lacks: a release removes the owner marker from the user's
// owned tokens too, so the reader must read those lists (one poll each) and compute
// again. It wraps ErrTokensNotRead.
type TokensNeededError struct {
	// UserIDs are the users whose token lists to read, sorted.
	UserIDs []string
}

func (e *TokensNeededError) Error() string {
	return fmt.Sprintf("plan: %d released users: %v", len(e.UserIDs), ErrTokensNotRead)
}

// Unwrap makes errors.Is(err, ErrTokensNotRead) hold.
func (e *TokensNeededError) Unwrap() error { return ErrTokensNotRead }

// release plans the release of owned user u, which no file declares: first each of
// its owned tokens loses cbk-sync's markers (an owned token whose secret was never
// delivered is revoked instead, as every plan revokes it), then the user loses its
// owner marker. Tokens go first so that a run that fails part way leaves the user
// owned, and the next plan releases what is left; the user first would leave owned
// tokens on an unmanaged user, which no plan reads again.
func (c *computer) release(u *state.User) {
	toks, read := c.a.Tokens[u.ID]
	if !read {
		c.needTokens = append(c.needTokens, u.ID)
		return
	}
	email := u.Email.Value()
	up := UserPlan{Identity: u.Identity(), Email: email, UserID: u.ID}
	for i := range toks {
		t := &toks[i]
		if own, _ := c.ownershipOf(t.Meta); own != owned {
			continue
		}
		ch := Change{Email: email, UserID: u.ID, TokenName: t.Name.Value(), TokenID: t.ID}
		if t.Pending() {
			ch.Action, ch.Reason = TokenRevoke, ReasonPending
		} else {
			ch.Action, ch.Reason = TokenRelease, ReasonTokenRelease
			var body state.Meta
			ch.Fields, body = unmark(t.Meta, state.OwnerKey, state.NonceKey, state.PendingKey)
			ch.TokenBody = &state.TokenFields{Meta: state.Some(body), MetaMerge: true}
		}
		up.Changes = append(up.Changes, ch)
	}
	sortTokenChanges(up.Changes)
	fields, body := unmark(u.Meta, state.OwnerKey)
	up.Changes = append(up.Changes, Change{Action: UserRelease, Email: email, UserID: u.ID,
		Reason: ReasonRelease, Fields: fields, UserBody: &state.UserFields{Meta: state.Some(body), MetaMerge: true}})
	// A release is an update, and every update without the user's alias clears it: the
	// file declares none for a user it no longer declares.
	c.noAlias++
	c.plan.Users = append(c.plan.Users, up)
}

// unmark returns the field changes and the meta to merge that set the given meta keys
// to null: those of them that m holds (the owner marker always).
func unmark(m state.Opt[state.Meta], keys ...string) ([]FieldChange, state.Meta) {
	mv := m.Value()
	body := state.Meta{}
	var fields []FieldChange
	for _, k := range keys {
		v, ok := mv[k]
		if !ok || (v == nil && k != state.OwnerKey) {
			continue
		}
		body[k] = nil
		fields = append(fields, FieldChange{Field: "meta." + k, Before: v, After: nil})
	}
	sortFields(fields)
	return fields, body
}

// tokensNeeded is the error for the releases whose token lists were not read, if any.
func (c *computer) tokensNeeded() error {
	if len(c.needTokens) == 0 {
		return nil
	}
	ids := slices.Clone(c.needTokens)
	slices.Sort(ids)
	return &TokensNeededError{UserIDs: ids}
}

// ReleasesTokens reports whether err asks for the token lists of released users, and
// which.
func ReleasesTokens(err error) ([]string, bool) {
	var need *TokensNeededError
	if errors.As(err, &need) {
		return need.UserIDs, true
	}
	return nil, false
}

// displayOrder is the order the views show a user's changes in: the user's own change
// first (a release runs it last), then its tokens in plan order.
func displayOrder(up *UserPlan) []*Change {
	out := make([]*Change, 0, len(up.Changes))
	for i := range up.Changes {
		if !up.Changes[i].Action.IsToken() {
			out = append(out, &up.Changes[i])
		}
	}
	for i := range up.Changes {
		if up.Changes[i].Action.IsToken() {
			out = append(out, &up.Changes[i])
		}
	}
	return out
}

// releaseLegend is the legend of a plan's text view, with the release symbol when the
// plan releases anything.
func releaseLegend(s Summary) string {
	if s.UserRelease+s.TokenRelease == 0 {
		return Legend
	}
	return strings.TrimSuffix(Legend, ".") + "," + LegendRelease
}
