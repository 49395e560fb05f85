package plan

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// create plans a declared user that does not exist remotely, with its tokens.
func (c *computer) create(du *state.DesiredUser) {
	body := &state.UserFields{
		Alias:       optAlias(du.Alias),
		Email:       du.Email,
		Name:        du.Name,
		Description: du.Description,
		Image:       du.Image,
		Meta:        state.Some(withMarker(du.Meta.Value(), c.owner)),
	}
	if l, ok := du.Limits.Get(); ok {
		// A limit declared null is left out: the platform refuses null for a known key.
		body.Limits = state.Some(state.WireLimits(l))
	}
	fields := appendCreated(nil, "email", du.Email)
	fields = appendCreated(fields, "alias", body.Alias)
	fields = appendCreated(fields, "name", du.Name)
	fields = appendCreated(fields, "description", du.Description)
	fields = appendCreated(fields, "image", du.Image)
	fields = appendMetaCreated(fields, body.Meta.Value())
	if l, ok := du.Limits.Get(); ok {
		fields = appendLimitsCreated(fields, "limits", l)
	} else if du.Limits.IsNull() {
		fields = append(fields, FieldChange{Field: "limits", After: nil})
	}
	email := du.Email.Value()
	up := UserPlan{Identity: du.Identity(), Email: email, Changes: []Change{{
		Action: UserCreate, Email: email, Reason: "declared and not found remotely",
		Fields: fields, UserBody: body,
	}}}
	up.Changes = append(up.Changes, c.newUserTokens(du)...)
	setEmail(up.Changes, email)
	c.plan.Users = append(c.plan.Users, up)
}

// setEmail gives every change of a user the user's email.
func setEmail(cs []Change, email string) {
	for i := range cs {
		cs[i].Email = email
	}
}

// existing plans a declared user that exists remotely as u.
func (c *computer) existing(du *state.DesiredUser, u *state.User, own ownership) error {
	if own == foreign && !c.o.Takeover {
		c.refuse(fmt.Sprintf("user %s is owned by %q; pass --takeover to adopt it", label(du.Identity()), u.Owner()))
		c.plan.Safety.Foreign = append(c.plan.Safety.Foreign, u.ID)
		return nil
	}
	var fields []FieldChange
	// A declared alias goes into every body: an update that leaves it out clears it.
	body := state.UserFields{Alias: optAlias(du.Alias)}
	fields, aliasNote := c.aliasDrift(fields, du, u)
	// Under an email identity the email matched (perhaps in another case, which is
	// left as it is); under the others it is an ordinary field.
	if du.Identity().Kind != state.ByEmail && stringDrift(du.Email, u.Email) {
		fields = append(fields, FieldChange{Field: "email", Before: optAny(u.Email), After: optAny(du.Email)})
		body.Email = du.Email
		c.emailTakenWarning(du, u)
	}
	if stringDrift(du.Name, u.Name) {
		fields = append(fields, FieldChange{Field: "name", Before: optAny(u.Name), After: optAny(du.Name)})
		body.Name = du.Name
	}
	if stringDrift(du.Description, u.Description) {
		fields = append(fields, FieldChange{Field: "description", Before: optAny(u.Description), After: optAny(du.Description)})
		body.Description = du.Description
	}
	if stringDrift(du.Image, u.Image) {
		fields = append(fields, FieldChange{Field: "image", Before: optAny(u.Image), After: optAny(du.Image)})
		body.Image = du.Image
	}
	fields, body.Meta, body.MetaMerge = c.metaChange(fields, du.Meta, du.MetaExact, u.Meta, own != owned, false)
	var limDrift bool
	fields, limDrift = limitsDrift(fields, du.Limits, u.Limits)
	if limDrift {
		if du.Limits.IsNull() {
			// "No limits" is the empty object: null is not a limits object the
			// platform's schema is known to accept.
			body.Limits = state.Some(state.Limits{})
		} else {
			body.Limits = state.Some(state.OverlayLimits(u.Limits.Value(), du.Limits.Value()))
		}
	}

	email := emailOf(du, u)
	up := UserPlan{Identity: du.Identity(), Email: email, UserID: u.ID}
	// The body is copied to the heap only when a change needs it.
	bodyPtr := func() *state.UserFields { b := body; return &b }
	switch {
	case own == unmanaged:
		up.Changes = append(up.Changes, Change{Action: UserAdopt, UserID: u.ID,
			Reason: "unmanaged user with a declared " + du.Identity().Kind.String() + ": adopt it" + aliasNote, Fields: fields, UserBody: bodyPtr()})
	case own == foreign:
		up.Changes = append(up.Changes, Change{Action: UserAdopt, UserID: u.ID,
			Reason: fmt.Sprintf("owned by %q: taken over (--takeover)", u.Owner()) + aliasNote, Fields: fields, UserBody: bodyPtr()})
	case len(fields) > 0:
		up.Changes = append(up.Changes, Change{Action: UserUpdate, UserID: u.ID,
			Reason: "drifted from the configuration" + aliasNote, Fields: fields, UserBody: bodyPtr()})
	}
	if len(up.Changes) > 0 && du.Alias == "" {
		c.noAlias++
	}

	if du.ManageTokens {
		var err error
		if up.Changes, err = c.userTokens(up.Changes, du, u); err != nil {
			return err
		}
	}
	if len(up.Changes) > 0 {
		setEmail(up.Changes, email)
		c.plan.Users = append(c.plan.Users, up)
	}
	return nil
}

// aliasDrift compares a declared alias with the answer of its `@alias` fetch, the only
// view of an alias the platform gives: it drifts when the alias names no user (it was
// removed, by an update that left it out) or another user. An alias that was not
// looked up is unknown and never drifts. The note is for the change's reason.
func (c *computer) aliasDrift(fields []FieldChange, du *state.DesiredUser, u *state.User) ([]FieldChange, string) {
	if du.Alias == "" {
		return fields, ""
	}
	holder, read := c.a.Aliases[du.Alias]
	if !read || holder == u.ID {
		return fields, ""
	}
	fields = append(fields, FieldChange{Field: "alias", After: du.Alias, BeforeUnknown: true})
	if holder == "" {
		return fields, fmt.Sprintf("; alias %q names no user", du.Alias)
	}
	c.warn(fmt.Sprintf("alias %q, declared for %s (%s), names user %s: the update that moves it fails with 409 CONFLICT while %s keeps it",
		du.Alias, label(du.Identity()), u.ID, holder, holder))
	return fields, fmt.Sprintf("; alias %q names user %s", du.Alias, holder)
}

func optAlias(a string) state.Opt[string] {
	if a == "" {
		return state.Opt[string]{}
	}
	return state.Some(a)
}

// aliasWarning says how many planned user writes clear an alias, if any: the platform
// clears the alias of every user updated without one, and cannot say who has one.
func (c *computer) aliasWarning() {
	if c.noAlias == 0 {
		return
	}
	what := fmt.Sprintf("%d users are updated", c.noAlias)
	if c.noAlias == 1 {
		what = "1 user is updated"
	}
	c.warn(what + " without a declared alias, and the platform clears the alias of every user it updates without one " +
		"(aliases are write-only, so cbk-sync cannot tell which users have one): declare `alias` for each user that has one")
}

// undeclared plans the owned users no file declares, as prune.users says: deleted,
// released, or listed as orphans. It returns the deletes, and those of the users that
// have an email, which an email change could have made.
func (c *computer) undeclared(users []state.User, owners []ownership, matchedBy []int32) (deletes int, unmatchedOwned []*state.User) {
	for i := range users {
		if matchedBy[i] != 0 || owners[i] != owned {
			continue
		}
		u := &users[i]
		if u.Email.Value() != "" {
			unmatchedOwned = append(unmatchedOwned, u)
		}
		if c.d.ReleaseUsers {
			c.release(u)
			continue
		}
		if !c.d.PruneUsers {
			c.plan.Orphans = append(c.plan.Orphans, Orphan{Identity: u.Identity(), Email: u.Email.Value(), UserID: u.ID,
				Reason: "owned and not declared; prune.users is false"})
			continue
		}
		deletes++
		c.plan.Users = append(c.plan.Users, UserPlan{Identity: u.Identity(), Email: u.Email.Value(), UserID: u.ID, Changes: []Change{{
			Action: UserDelete, Email: u.Email.Value(), UserID: u.ID,
			Reason: "owned and not declared (prune.users is true); " + IrreversibleDelete,
		}}})
	}
	return deletes, unmatchedOwned
}

// UserChanges plans one declared user that exists remotely as u, from u as it was just
// read and its token list (which must have been read when du.ManageTokens): the same
// changes Compute would plan for that user. apply calls it when a user the plan meant
// to create turned out to exist, so that nothing is done to that user from a state
// the plan never saw. It is pure, like Compute. The returned reasons are what would
// make the plan unsafe for this user (a foreign owner without Takeover); warnings are
// the plan's warnings about it.
func UserChanges(du *state.DesiredUser, owner string, u state.User, tokens []state.Token, o Options) (up UserPlan, reasons, warnings []string, err error) {
	if owner == "" {
		return UserPlan{}, nil, nil, errors.New("plan: no owner")
	}
	c := computer{d: state.Desired{Owner: owner}, a: state.Actual{Users: []state.User{u}}, o: o, owner: owner}
	c.index = state.NewUserIndex(c.a.Users, "")
	if du.ManageTokens {
		if tokens == nil {
			tokens = []state.Token{}
		}
		c.a.Tokens = map[string][]state.Token{u.ID: tokens}
	}
	own, _ := c.ownershipOf(u.Meta)
	if err := c.existing(du, &u, own); err != nil {
		return UserPlan{}, nil, nil, err
	}
	up = UserPlan{Identity: du.Identity(), Email: emailOf(du, &u), UserID: u.ID}
	if len(c.plan.Users) > 0 {
		up = c.plan.Users[0]
	}
	c.aliasWarning()
	slices.Sort(c.warnings)
	return up, c.plan.Safety.Reasons, slices.Compact(c.warnings), nil
}
