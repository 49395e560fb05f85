package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ErrEdited is wrapped by Check's error: the file's plan is not the one its own desired
// state and remote objects give, so it was edited (or written by a different cbk-sync).
var ErrEdited = errors.New("the saved plan does not follow from the desired state and remote objects saved with it")

// ErrStale is wrapped by Verify's error: a remote object the plan depends on changed
// since the plan was saved, so the plan computed again differs.
var ErrStale = errors.New("the remote state changed since the plan was saved")

// ErrUnsafe is wrapped by Check's and Verify's errors for a plan that, computed again,
// is unsafe (a delete cap, a user that needs --takeover).
var ErrUnsafe = errors.New("the plan is unsafe")

// Check computes the saved plan again from the desired state and remote objects saved
// with it, without any I/O, and returns that plan if it equals the saved one and is
// safe. So a hand-edited change (a delete added, a body or the safe flag changed) is
// refused before anything is read, and what `show FILE` prints is what apply would run.
func (s *Saved) Check() (*Plan, error) {
	p, err := s.recompute(s.Remote, s.Plan.Safety.Owned)
	if err != nil {
		return nil, err
	}
	if err := s.compare(p, ErrEdited); err != nil {
		return nil, err
	}
	return p, unsafeErr(p)
}

// Reads is what apply must read again to verify a saved plan.
type Reads struct {
	// Users are the IDs of the users to fetch (a fetch is not a poll).
	Users []string
	// Tokens are the IDs of the users whose token lists to read.
	Tokens []string
	// Listing is true when the whole user list is needed instead of the fetches: the
	// plan creates users (whose emails must still be free) or deletes users under the
	// percentage cap (which needs the number of owned users).
	Listing bool
}

// Reads returns what Verify needs.
func (s *Saved) Reads() Reads {
	r := Reads{Tokens: slices.Sorted(maps.Keys(s.Remote.Tokens))}
	for _, u := range s.Remote.Users {
		r.Users = append(r.Users, u.ID)
	}
	sum := s.Plan.Summary()
	percentCap := s.Options.MaxDeletePercent >= 0 && !s.Options.ForceDeletes
	// The update percentage uses the owned count of the saved plan unless the listing
	// is read anyway: an update-only plan stays a few fetches.
	r.Listing = sum.UserCreate > 0 || (sum.UserDelete > 0 && percentCap)
	return r
}

// Fresh is what apply read again, as Reads said.
type Fresh struct {
	// Users are the users fetched (a fetch does not return description, which is then
	// absent), or with Listed every user of the account. A user that is gone is not in it.
	Users  []state.User
	Listed bool
	// Tokens are the token lists read, by user ID.
	Tokens map[string][]state.Token
}

// Verify computes the saved plan again from its desired state and the fresh remote
// objects f, and returns the plan to apply: the recomputed one, if it equals the saved
// plan, depends on unchanged objects, and is safe. Ownership and safety are decided
// here again; nothing of the saved plan's own verdicts is used.
func (s *Saved) Verify(f Fresh) (*Plan, error) {
	fresh := make(map[string]state.User, len(f.Users))
	for _, u := range f.Users {
		fresh[u.ID] = u
	}
	// The alias lookups are not made again: an alias changes only by a write to a user,
	// which moves its updatedAt, compared below (see Fingerprint).
	a := state.Actual{Users: []state.User{}, Tokens: map[string][]state.Token{}, Aliases: s.Remote.Aliases}
	inPlan := map[string]bool{}
	for _, su := range s.Remote.Users {
		fu, ok := fresh[su.ID]
		if !ok {
			return nil, fmt.Errorf("%w: user %s (%s) no longer exists", ErrStale, label(su.Identity()), su.ID)
		}
		if fu.Description.Absent() {
			// Fetched: the platform's fetch leaves description out. Every other field,
			// updatedAt included, is compared, and a changed description moves
			// updatedAt, so the saved description is the current one.
			fu.Description = su.Description
		}
		if !bytes.Equal(encodeUser(&fu), encodeUser(&su)) {
			return nil, fmt.Errorf("%w: user %s (%s) was changed", ErrStale, label(su.Identity()), su.ID)
		}
		inPlan[su.ID] = true
		a.Users = append(a.Users, fu)
	}
	for id, saved := range s.Remote.Tokens {
		toks, ok := f.Tokens[id]
		if !ok {
			return nil, fmt.Errorf("%w: the token list of user %s was not read again", ErrStale, id)
		}
		if Fingerprint(state.Actual{Tokens: map[string][]state.Token{id: toks}}) != Fingerprint(state.Actual{Tokens: map[string][]state.Token{id: saved}}) {
			return nil, fmt.Errorf("%w: the tokens of user %s were changed", ErrStale, id)
		}
		a.Tokens[id] = toks
	}
	owned := s.Plan.Safety.Owned
	if f.Listed {
		// A declared identity that a user has taken since (an email a planned create
		// would now meet 409 on) is planned against that user, and so differs.
		claims := state.NewClaims(s.Desired.ExternalIDKey)
		for i := range s.Desired.Users {
			claims.Add(&s.Desired.Users[i])
		}
		owned = 0
		for i := range f.Users {
			u := &f.Users[i]
			if u.IsLease() {
				continue
			}
			if u.Owner() == s.Desired.Owner {
				owned++
			}
			if !inPlan[u.ID] && claims.Has(u) {
				a.Users = append(a.Users, *u)
			}
		}
	}
	p, err := s.recompute(a, owned)
	if err != nil {
		// The saved state gave a plan (Check): what the fresh one added (a user that
		// took a declared identity, say) is why it no longer does.
		return nil, fmt.Errorf("%w: %w", ErrStale, err)
	}
	if err := s.compare(p, ErrStale); err != nil {
		return nil, err
	}
	return p, unsafeErr(p)
}

// recompute plans the saved desired state against a, the remote objects the plan
// depends on, with owned as the number of owned users for the delete caps. Users
// whose tokens had no change are planned without their token lists.
func (s *Saved) recompute(a state.Actual, owned int) (*Plan, error) {
	c := computer{d: s.Desired, a: a, o: s.Options, owner: s.Desired.Owner, ownedOverride: owned, partialTokens: true}
	p, err := c.run()
	if err != nil {
		return nil, fmt.Errorf("computing the saved plan again: %w", err)
	}
	// Orphans and warnings are about the whole account, which was not read again;
	// they change nothing, so the saved ones are shown. So are the number of users whose
	// tokens a plan --base did not check, and the count of the account's users.
	p.Orphans, p.Warnings, p.TokensUnchecked, p.Account = s.Plan.Orphans, s.Plan.Warnings, s.Plan.TokensUnchecked, s.Plan.Account
	// The declared users' IDs are the saved ones (read with the whole account), with
	// those of the users read again here laid over them.
	p.Declared = mergeDeclared(s.Plan.Declared, p.Declared)
	return &p, nil
}

// compare returns an error wrapping kind when p, the plan computed again, differs from
// the saved one in anything that is sent or decided: the changes, the owner, the
// fingerprint of what they depend on, the safety verdict.
func (s *Saved) compare(p *Plan, kind error) error {
	sp := s.Plan
	switch {
	case p.Owner != sp.Owner:
		return fmt.Errorf("%w: owner %q, saved %q", kind, p.Owner, sp.Owner)
	case !sameJSON(p.Users, sp.Users):
		return fmt.Errorf("%w: %s", kind, firstDifference(p.Users, sp.Users))
	case p.Fingerprint != sp.Fingerprint || !slices.Equal(p.TokenUsers, sp.TokenUsers):
		return fmt.Errorf("%w: the remote objects it depends on differ (fingerprint %.12s, saved %.12s)", kind, p.Fingerprint, sp.Fingerprint)
	case p.Safety.Safe != sp.Safety.Safe || p.Safety.Deletes != sp.Safety.Deletes ||
		!slices.Equal(p.Safety.Reasons, sp.Safety.Reasons) || !slices.Equal(p.Safety.Foreign, sp.Safety.Foreign):
		return fmt.Errorf("%w: its safety verdict differs (safe: %v, saved %v)", kind, p.Safety.Safe, sp.Safety.Safe)
	}
	return nil
}

func unsafeErr(p *Plan) error {
	if p.Safety.Safe {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUnsafe, joinReasons(p.Safety.Reasons))
}

func joinReasons(rs []string) string {
	var b bytes.Buffer
	for i, r := range rs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r)
	}
	return b.String()
}

// firstDifference names the first user whose changes differ, for the error message.
func firstDifference(got, saved []UserPlan) string {
	for i := range max(len(got), len(saved)) {
		switch {
		case i >= len(got):
			return fmt.Sprintf("the saved plan has changes for %s that it does not give", label(saved[i].Identity))
		case i >= len(saved):
			return fmt.Sprintf("it gives changes for %s that the saved plan lacks", label(got[i].Identity))
		case !sameJSON(got[i], saved[i]):
			return fmt.Sprintf("the changes for user %s differ", label(saved[i].Identity))
		}
	}
	return "the changes differ"
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
