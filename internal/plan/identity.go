package plan

import (
	"fmt"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// IrreversibleDelete ends the reason of every user delete, so that each view says what
// a delete costs: the platform deletes everything the sub-account owns with it.
const IrreversibleDelete = "deleting a sub-account is irreversible: its bots, datasets, files and conversations are destroyed with it"

// where names a declared user in a message: its position in the files and its
// identity (only the identity for a user that came from no file).
func where(du *state.DesiredUser) string {
	id := du.Identity()
	if du.Pos.File == "" && du.Pos.Line == 0 {
		return id.String()
	}
	return fmt.Sprintf("%s:%d (%s)", du.Pos.File, du.Pos.Line, id)
}

// label names a user in a warning or a reason: an email as itself, as before there
// were other identities, and the others with their kind ("id u_123").
func label(id state.Identity) string {
	if id.Kind == state.ByEmail {
		return id.Value
	}
	return id.String()
}

// emailOf is the email a change of an existing user carries: the declared one, else
// the remote one.
func emailOf(du *state.DesiredUser, u *state.User) string {
	if e, ok := du.Email.Get(); ok {
		return e
	}
	return u.Email.Value()
}

// maxPinHints bounds the users the email-change warning names.
const maxPinHints = 5

// emailChangeWarning warns when a plan creates users by email while owned users go
// undeclared (deleted, or orphaned): that is exactly what an email changed on the
// platform or in the file looks like, and the delete it plans is irreversible. It
// shows how to pin those users by id, which makes an email change one update.
func (c *computer) emailChangeWarning(creates int, gone []*state.User) {
	if creates == 0 || len(gone) == 0 {
		return
	}
	what := "lists " + Count(len(gone), "owned user", "owned users") + " as orphaned"
	switch {
	case c.d.ReleaseUsers:
		what = "releases " + Count(len(gone), "owned user", "owned users")
	case c.d.PruneUsers:
		what = "deletes " + Count(len(gone), "owned user", "owned users")
	}
	var pins []string
	for _, u := range gone[:min(len(gone), maxPinHints)] {
		pins = append(pins, fmt.Sprintf("%s -> `id: %s`", label(u.Identity()), u.ID))
	}
	if len(gone) > maxPinHints {
		pins = append(pins, fmt.Sprintf("and %d more", len(gone)-maxPinHints))
	}
	c.warn(fmt.Sprintf("the plan creates %s by email and %s: an email changed on the platform or in the file looks exactly like this, "+
		"and would put an empty sub-account in that one's place (and a delete is irreversible). If a user only changed its email, "+
		"declare it by its id, which an email change never breaks: %s",
		Count(creates, "user", "users"), what, strings.Join(pins, ", ")))
}

// emailTakenWarning warns when an email declared under an id or externalId identity
// belongs to another remote user: the update that sets it meets 409 CONFLICT.
func (c *computer) emailTakenWarning(du *state.DesiredUser, u *state.User) {
	e, ok := du.Email.Get()
	if !ok || e == "" {
		return
	}
	j, err := c.index.Find(state.Identity{Kind: state.ByEmail, Value: e})
	if err != nil || j < 0 {
		return
	}
	if other := c.index.Users()[j].ID; other != u.ID {
		c.warn(fmt.Sprintf("email %s, declared for %s (%s), belongs to user %s: the update that sets it fails with 409 CONFLICT while %s has it",
			e, label(du.Identity()), u.ID, other, other))
	}
}

// TokenListsToRead returns the remote users whose token lists a plan of d must read,
// asked one user at a time while the listing streams: those a declared user that
// declares tokens may name. A non-nil need (TokenListsNeeded) narrows them to the users
// of its identity keys.
func TokenListsToRead(d state.Desired, need map[string]bool) *state.Claims {
	c := state.NewClaims(d.ExternalIDKey)
	for i := range d.Users {
		du := &d.Users[i]
		if du.ManageTokens && (need == nil || need[du.Identity().Key()]) {
			c.Add(du)
		}
	}
	return c
}
