package apply

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Creates are not idempotent, so a create whose answer was lost, or that met 409, is
// never retried blindly: the object is looked up first, and only a lookup that proves
// the create did not happen allows another one.

// createUser creates the user of c, named ident, and returns its ID. A lost answer or a
// 409 is resolved by looking the identity up: a user found with our marker or with none is
// returned as found, for the caller to re-plan; a user of another owner is an error,
// and nothing found after a lost answer means the create can be sent again.
func (r *runner) createUser(ident state.Identity, c plan.Change, res *Result) (string, *state.User, error) {
	if c.UserBody == nil {
		return "", nil, fmt.Errorf("%s: the plan has no user body", c.Action)
	}
	body := r.withUserMarker(*c.UserBody)
	for attempt := 1; ; attempt++ {
		id, err := r.api.CreateUser(r.call, body)
		if err == nil && id == "" {
			return "", nil, fmt.Errorf("%s: the API answered without a user ID", c.Action)
		}
		if err == nil {
			if res.Recovered != "" {
				addNote(res, "created")
			}
			return id, nil, nil
		}
		lost := client.IsLost(err)
		if !lost && !client.IsConflict(err) {
			return "", nil, err
		}
		what := "answer lost"
		if !lost {
			what = "409 conflict"
		}
		u, found, lerr := r.findUser(ident, c.Email)
		if lerr != nil {
			return "", nil, fmt.Errorf("%w; then looking the user up by %s failed: %v", err, ident.Kind, lerr)
		}
		if found {
			kind := "unmanaged"
			switch owner := u.Owner(); owner {
			case r.o.Owner:
				kind = "owned"
			case "":
			default:
				return "", nil, fmt.Errorf("%w; the user with this %s belongs to owner %q, so it was not adopted", err, ident.Kind, owner)
			}
			addNote(res, fmt.Sprintf("%s; found %s user %s by %s", what, kind, u.ID, ident.Kind))
			return u.ID, &u, nil
		}
		if !lost {
			if a, ok := body.Alias.Get(); ok && a != "" {
				// The platform answers one 409 body for a duplicate email and a
				// duplicate alias alike: with no user of this email, the alias is taken.
				return "", nil, fmt.Errorf("%w; no user with this %s exists, so the alias %q is taken by another user: give this user another alias", err, ident.Kind, a)
			}
			return "", nil, fmt.Errorf("%w; yet no user with this %s was found", err, ident.Kind)
		}
		addNote(res, fmt.Sprintf("answer lost; not found by %s, so not created", ident.Kind))
		if attempt >= maxCreateAttempts {
			return "", nil, fmt.Errorf("gave up after %d creates whose answers were lost: %w", attempt, err)
		}
	}
}

// create runs the user create changes[j]. When the user turns out to exist already, the
// rest of its plan was computed without having seen it: the user and its token list
// are read, the user is planned afresh (plan.UserChanges), its user change is made as
// part of this one, and its later changes are replaced by the fresh plan's. It returns
// the changes and results to go on with, and the reason to skip the rest, if any.
func (r *runner) create(ident state.Identity, c plan.Change, userID *string, changes []plan.Change, results []Result, j int) ([]plan.Change, []Result, string, error) {
	res := &results[j]
	id, found, err := r.createUser(ident, c, res)
	if err != nil {
		return changes, results, "skipped: the user could not be created", err
	}
	*userID, res.UserID = id, id
	if found == nil {
		return changes, results, "", nil
	}
	du := r.desired[ident.Key()]
	if du == nil {
		// No desired state to re-plan from: adopt the user with the create body, and
		// make none of the changes planned without seeing it.
		if err := r.api.UpdateUser(r.call, found.ID, adoptBody(r.withUserMarker(*c.UserBody), *found)); err != nil {
			return changes, results, "skipped: the user could not be adopted", fmt.Errorf("adopting user %s failed: %w", found.ID, err)
		}
		addNote(res, "adopted")
		return changes, results, fmt.Sprintf("skipped: user %s already existed, and this change was planned without reading it (run cbk-sync again)", found.ID), nil
	}
	var tokens []state.Token
	if du.ManageTokens {
		if tokens, err = r.listTokens(found.ID); err != nil {
			return changes, results, "skipped: the user that already existed could not be re-planned",
				fmt.Errorf("user %s already exists; reading its tokens to re-plan it failed: %w", found.ID, err)
		}
	}
	po := r.o.PlanOptions
	if po.Now.IsZero() {
		po.Now = r.o.Now()
	}
	fresh, reasons, warnings, err := plan.UserChanges(du, r.o.Owner, *found, tokens, po)
	if err == nil && len(reasons) > 0 {
		err = errors.New(strings.Join(reasons, "; "))
	}
	if err != nil {
		return changes, results, "skipped: the user that already existed could not be re-planned",
			fmt.Errorf("user %s already exists; re-planning it failed: %w", found.ID, err)
	}
	for _, w := range warnings {
		r.log.Warn(w)
	}
	var toks []plan.Change
	userDone := "nothing to change for the user"
	for _, fc := range fresh.Changes {
		if fc.Action.IsToken() {
			toks = append(toks, fc)
			continue
		}
		if err := r.do(fc, userID, res); err != nil {
			addNote(res, fmt.Sprintf("re-planned from its fresh state; %s failed", fc.Action))
			return changes, results, "skipped: the user could not be adopted", err
		}
		userDone = fc.Action.String() + " done"
	}
	addNote(res, fmt.Sprintf("re-planned from its fresh state (%d tokens read): %s", len(tokens), userDone))

	// Each later planned change runs as its fresh counterpart (the same token name), or
	// is done already; fresh changes with no planned counterpart run after them.
	used := make([]bool, len(toks))
	outC, outR := slices.Clone(changes[:j+1]), slices.Clone(results[:j+1])
	for k := j + 1; k < len(changes); k++ {
		pc, pr := changes[k], results[k]
		pr.UserID = found.ID
		if !pc.Action.IsToken() {
			outC, outR = append(outC, pc), append(outR, pr)
			continue
		}
		m := -1
		for i, fc := range toks {
			if !used[i] && fc.Action != plan.TokenRevoke && fc.TokenName == pc.TokenName {
				m = i
				break
			}
		}
		if m < 0 {
			pr.Recovered = fmt.Sprintf("not needed: user %s already has token %s as declared", found.ID, pc.TokenName)
			outC, outR = append(outC, plan.Change{Action: plan.NoOp, Email: pc.Email, UserID: found.ID}), append(outR, pr)
			continue
		}
		used[m] = true
		fc := toks[m]
		if fc.Action != pc.Action {
			pr.Recovered = fmt.Sprintf("re-planned as %s: %s", fc.Action, fc.Reason)
		}
		pr.Action, pr.TokenID = fc.Action, fc.TokenID
		outC, outR = append(outC, fc), append(outR, pr)
	}
	for i, fc := range toks {
		if used[i] {
			continue
		}
		outC = append(outC, fc)
		outR = append(outR, Result{Action: fc.Action, Email: fc.Email, UserID: found.ID, TokenName: fc.TokenName, TokenID: fc.TokenID,
			Recovered: "re-planned: " + fc.Reason})
	}
	r.addTotal(len(outC) - len(changes))
	return outC, outR, "", nil
}

// findUser looks up, with one filtered list call, the user a create named id was
// for: by its externalId (the meta filter) or its email. A user is matched as
// state.UserIndex matches it, so a filter that the API applies differently (case)
// cannot give another user. An externalId that no user has yet is looked up by the
// email the create sent, as the plan matches it.
func (r *runner) findUser(id state.Identity, email string) (state.User, bool, error) {
	key := r.externalIDKey()
	o := client.ListOptions{Email: email}
	if id.Kind == state.ByExternalID {
		o = client.ListOptions{Meta: map[string]string{key: id.Value}}
	}
	var got []state.User
	for u, err := range r.api.ListUsers(r.call, o) {
		if err != nil {
			return state.User{}, false, err
		}
		got = append(got, u)
	}
	idx := state.NewUserIndex(got, key)
	i, err := idx.Find(id)
	if err != nil {
		return state.User{}, false, err
	}
	if i < 0 && id.Kind == state.ByExternalID && email != "" {
		return r.findUser(state.Identity{Kind: state.ByEmail, Value: email}, email)
	}
	if i < 0 {
		return state.User{}, false, nil
	}
	return got[i], true, nil
}

// externalIDKey is the meta key of external ids of the desired state the plan came
// from.
func (r *runner) externalIDKey() string {
	if r.o.Desired != nil && r.o.Desired.ExternalIDKey != "" {
		return r.o.Desired.ExternalIDKey
	}
	return state.DefaultExternalIDKey
}

// withUserMarker makes sure the body carries the ownership marker, as everything
// cbk-sync creates or adopts must.
func (r *runner) withUserMarker(b state.UserFields) state.UserFields {
	m := b.Meta.Value()
	if r.o.Owner == "" || m[state.OwnerKey] == r.o.Owner {
		return b
	}
	m = m.Clone()
	if m == nil {
		m = state.Meta{}
	}
	m[state.OwnerKey] = r.o.Owner
	b.Meta = state.Some(m)
	return b
}

// adoptBody turns a create body into the update that adopts remote: meta is merged so
// that keys the user already had are kept, and limits, which the API replaces whole,
// are the remote ones with the declared ones laid over them.
func adoptBody(b state.UserFields, remote state.User) state.UserFields {
	b.MetaMerge = true
	if declared, ok := b.Limits.Get(); ok {
		if rl, ok := remote.Limits.Get(); ok {
			b.Limits = state.Some(state.OverlayLimits(rl, declared))
		}
	}
	return b
}
