package plan

import (
	"cmp"
	"errors"
	"fmt"
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

// DefaultOptions returns the options a command uses when no flag changes them.
func DefaultOptions(now time.Time) Options {
	return Options{MaxDeletes: DefaultMaxDeletes, MaxDeletePercent: DefaultMaxDeletePercent,
		MaxUpdates: DefaultMaxUpdates, MaxUpdatePercent: DefaultMaxUpdatePercent,
		MaxTokenRevokes: DefaultMaxTokenRevokes, MaxTokenRevokePercent: DefaultMaxTokenRevokePercent, Now: now}
}

// ErrTokensNotRead is wrapped by Compute's error when a user that declares tokens
// exists remotely but its token list is missing from the actual state: the reader must
// read it, since planning without it would revoke or recreate tokens blindly.
var ErrTokensNotRead = errors.New("token list not read")

// Compute returns the plan that makes the remote state a equal to the desired state d.
// It is pure and deterministic: the same inputs, in any order, give the same plan.
//
// Lease users (state.User.IsLease) are not part of the state a plan manages: they are
// left out before anything is matched or counted.
func Compute(d state.Desired, a state.Actual, o Options) (Plan, error) {
	c := computer{d: d, a: a, o: o, owner: d.Owner, ownedOverride: -1}
	return c.run()
}

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

// ownership is how a remote object relates to this owner scope.
type ownership int

const (
	unmanaged ownership = iota
	owned
	foreign
)

func (c *computer) ownershipOf(m state.Opt[state.Meta]) (ownership, string) {
	v, ok := m.Get()
	if !ok {
		return unmanaged, ""
	}
	s, _ := v[state.OwnerKey].(string)
	switch {
	case s == "":
		return unmanaged, ""
	case s == c.owner:
		return owned, s
	default:
		return foreign, s
	}
}

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

	// matchedBy holds, for each remote user, 1 + the index of the declared user that
	// names it. Only creates need a set of identities, which keeps a large
	// steady-state run from building one more 100,000-entry map.
	matchedBy := make([]int32, len(users))
	var created map[string]int
	emailCreates := 0
	c.plan.matched = newMatches(c.d.Users)
	for i := range c.d.Users {
		du := &c.d.Users[i]
		id := du.Identity()
		if id.IsZero() {
			return Plan{}, fmt.Errorf("plan: %s: the declared user has no id, externalId or email", where(du))
		}
		j, err := c.index.Match(du)
		if err != nil {
			return Plan{}, fmt.Errorf("plan: %s: %w", where(du), err)
		}
		if j < 0 {
			if id.Kind == state.ByID {
				return Plan{}, fmt.Errorf("plan: %s: user id %q does not exist on the platform, and an id cannot be created: correct the id, or declare the user by externalId or email to create it", where(du), du.ID)
			}
			key := id.Key()
			if prev, dup := created[key]; dup {
				return Plan{}, fmt.Errorf("plan: %s: %s is declared twice (also at %s)", where(du), id, where(&c.d.Users[prev]))
			}
			if created == nil {
				created = map[string]int{}
			}
			created[key] = i
			if id.Kind == state.ByEmail {
				emailCreates++
			}
			c.create(du)
			continue
		}
		if prev := matchedBy[j]; prev != 0 {
			return Plan{}, fmt.Errorf("plan: %s and %s both name user %s: declare it once", where(&c.d.Users[prev-1]), where(du), users[j].ID)
		}
		matchedBy[j] = int32(i + 1)
		c.plan.matched.set(i, du, &users[j])
		if err := c.existing(du, &users[j], owners[j]); err != nil {
			return Plan{}, err
		}
	}

	c.plan.Account = census(owners, matchedBy)
	deletes := 0
	var unmatchedOwned []*state.User // those with an email, which an email change could have made
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

// withoutLeases returns us without its lease users; without any, us itself.
func withoutLeases(us []state.User) []state.User {
	for i := range us {
		if us[i].IsLease() {
			out := slices.Clone(us[:i])
			for _, u := range us[i+1:] {
				if !u.IsLease() {
					out = append(out, u)
				}
			}
			return out
		}
	}
	return us
}

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
	if du.ManageTokens {
		toks := make([]Change, 0, len(du.Tokens))
		for i := range du.Tokens {
			toks = append(toks, c.tokenCreate(du, &du.Tokens[i], "", TokenCreate, "declared and not found remotely"))
		}
		sortTokenChanges(toks)
		up.Changes = append(up.Changes, toks...)
	}
	setEmail(up.Changes, email)
	c.plan.Users = append(c.plan.Users, up)
}

// setEmail gives every change of a user the user's email.
func setEmail(cs []Change, email string) {
	for i := range cs {
		cs[i].Email = email
	}
}

func (c *computer) tokenCreate(du *state.DesiredUser, dt *state.DesiredToken, userID string, act Action, reason string) Change {
	body := &state.TokenFields{
		Name:        state.Some(dt.Name),
		Description: tokenText(dt.Description),
		Meta:        state.Some(withMarker(dt.Meta.Value(), c.owner)),
	}
	fields := appendCreated(nil, "description", body.Description)
	fields = appendMetaCreated(fields, body.Meta.Value())
	return Change{Action: act, UserID: userID, TokenName: dt.Name, Reason: reason, Fields: fields, TokenBody: body}
}

// existing plans a declared user that exists remotely as u.
func (c *computer) existing(du *state.DesiredUser, u *state.User, own ownership) error {
	if own == foreign && !c.o.Takeover {
		c.plan.Safety.Reasons = append(c.plan.Safety.Reasons,
			fmt.Sprintf("user %s is owned by %q; pass --takeover to adopt it", label(du.Identity()), u.Owner()))
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
		toks, ok := c.a.Tokens[u.ID]
		switch {
		case ok:
			up.Changes = c.tokens(up.Changes, du, u.ID, toks)
		case !c.partialTokens:
			return fmt.Errorf("plan: user %s (%s) declares tokens: %w", label(du.Identity()), u.ID, ErrTokensNotRead)
		case c.countUnchecked:
			c.plan.TokensUnchecked++
		}
		// Else its tokens had no change when the plan was saved: not read again.
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

// AliasesToRead returns the declared aliases of the declared users that exist in users
// (matched as Compute matches them), sorted: the `@alias` fetches whose answers, in
// Actual.Aliases, let Compute find a missing or moved alias. A user to be created needs
// none, since its create sends the alias. A user that cannot be matched (a duplicate
// identity) needs none either: Compute refuses the plan.
func AliasesToRead(d state.Desired, users []state.User) []string {
	var idx *state.UserIndex
	var out []string
	for i := range d.Users {
		du := &d.Users[i]
		if du.Alias == "" {
			continue
		}
		if idx == nil {
			idx = state.NewUserIndex(withoutLeases(users), d.ExternalIDKey)
		}
		if j, err := idx.Match(du); err == nil && j >= 0 {
			out = append(out, du.Alias)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// stringDrift reports whether a declared string field differs from the remote one.
// Absent on either side never drifts (unmanaged, or unknown); null and "" are equal,
// since the API stores "" as null.
func stringDrift(d, r state.Opt[string]) bool {
	if d.Absent() || r.Absent() {
		return false
	}
	return d.Value() != r.Value()
}

func optAny[T any](o state.Opt[T]) any {
	if v, ok := o.Get(); ok {
		return v
	}
	return nil
}

func appendCreated(fields []FieldChange, name string, o state.Opt[string]) []FieldChange {
	if o.Absent() {
		return fields
	}
	return append(fields, FieldChange{Field: name, After: optAny(o)})
}

func appendMetaCreated(fields []FieldChange, m state.Meta) []FieldChange {
	for _, k := range m.SortedKeys() {
		fields = append(fields, FieldChange{Field: "meta." + k, After: m[k]})
	}
	return fields
}

// withMarker returns a copy of m with the ownership marker set to owner.
func withMarker(m state.Meta, owner string) state.Meta {
	out := make(state.Meta, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[state.OwnerKey] = owner
	return out
}

// metaChange compares declared meta d with remote meta r and returns the field changes
// appended to fields and the meta to send. adopt forces the marker to be written even
// when nothing else drifted; isToken ignores the creation nonce and the pending mark
// the apply engine writes into token meta, so that exact mode does not fight them.
func (c *computer) metaChange(fields []FieldChange, d state.Opt[state.Meta], exact bool, r state.Opt[state.Meta], adopt, isToken bool) ([]FieldChange, state.Opt[state.Meta], bool) {
	rm, known := r.Get()
	if !known && !r.IsNull() {
		// Unknown remote meta: compare nothing; an adoption still writes the marker.
		if !adopt {
			return fields, state.Opt[state.Meta]{}, false
		}
		want := withMarker(d.Value(), c.owner)
		for _, k := range want.SortedKeys() {
			fields = append(fields, FieldChange{Field: "meta." + k, After: want[k], BeforeUnknown: true})
		}
		merge := d.Absent() || (d.IsSet() && !exact)
		return fields, state.Some(want), merge
	}
	n := len(fields)
	switch {
	case d.Absent():
		// Meta is unmanaged: only the marker is enforced, merged in.
		if prev, _ := rm[state.OwnerKey].(string); prev != c.owner {
			fields = append(fields, FieldChange{Field: "meta." + state.OwnerKey, Before: rm[state.OwnerKey], After: c.owner})
			return fields, state.Some(state.Meta{state.OwnerKey: c.owner}), true
		}
		return fields, state.Opt[state.Meta]{}, false
	case d.IsNull() || exact:
		// The whole meta is enforced: declared keys plus the marker, nothing else.
		// Maps are walked directly and only drifted keys sorted, since this runs for
		// every user and token.
		dm := d.Value()
		fields = c.declaredMetaDrift(fields, dm, rm)
		for k, rv := range rm {
			if _, ok := dm[k]; ok || k == state.OwnerKey || (isToken && (k == state.NonceKey || k == state.PendingKey)) || rv == nil {
				continue
			}
			fields = append(fields, FieldChange{Field: "meta." + k, Before: rv, After: nil})
		}
		if len(fields) == n {
			return fields, state.Opt[state.Meta]{}, false
		}
		sortFields(fields[n:])
		return fields, state.Some(withMarker(dm, c.owner)), false
	default:
		// Merge: only the declared keys and the marker are compared.
		dm := d.Value()
		fields = c.declaredMetaDrift(fields, dm, rm)
		if len(fields) == n {
			return fields, state.Opt[state.Meta]{}, false
		}
		sortFields(fields[n:])
		return fields, state.Some(withMarker(dm, c.owner)), true
	}
}

// metaDrift reports whether a declared meta value differs from the remote one. A
// declared null equals a missing key, since storing null (merge or replace) may keep
// the key as null or drop it.
func metaDrift(dv, rv any, present bool) bool {
	if !present {
		return dv != nil
	}
	return !equalValue(dv, rv)
}

func sortFields(fs []FieldChange) {
	if len(fs) > 1 {
		slices.SortFunc(fs, func(x, y FieldChange) int { return strings.Compare(x.Field, y.Field) })
	}
}

// equalValue compares two JSON-shaped values, with fast paths for the scalar types
// meta nearly always holds.
func equalValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		if y, ok := b.(float64); ok {
			return x == y
		}
	}
	if b == nil {
		return false
	}
	return state.EqualJSON(a, b)
}

// limitsDrift compares only the declared limits; remote limits that are unknown
// (missing from the answer) are never compared.
func limitsDrift(fields []FieldChange, d state.Opt[state.Limits], r state.Opt[state.Limits]) ([]FieldChange, bool) {
	if d.Absent() || r.Absent() {
		return fields, false
	}
	if d.IsNull() {
		if r.IsNull() || len(r.Value()) == 0 {
			return fields, false
		}
		return append(fields, FieldChange{Field: "limits", Before: map[string]any(r.Value()), After: nil}), true
	}
	n := len(fields)
	fields = limitTreeDrift(fields, "limits", d.Value(), r.Value())
	sortFields(fields[n:])
	return fields, len(fields) > n
}

// limitTreeDrift compares the declared keys of one limits object with the remote
// object at the same place. Inside a limits object that the API returned, a missing
// key is not there (the object is stored whole), so it equals null; a declared object
// is compared key by key, and an empty one declares nothing.
func limitTreeDrift(fields []FieldChange, path string, d, r map[string]any) []FieldChange {
	for k, dv := range d {
		name := path + "." + k
		rv, present := r[k]
		if dm, ok := dv.(map[string]any); ok {
			rm, _ := rv.(map[string]any)
			fields = limitTreeDrift(fields, name, dm, rm)
			continue
		}
		if dv == nil {
			if present && rv != nil {
				fields = append(fields, FieldChange{Field: name, Before: rv, After: nil})
			}
			continue
		}
		if !present || !equalValue(dv, rv) {
			fields = append(fields, FieldChange{Field: name, Before: rv, After: dv})
		}
	}
	return fields
}

// appendLimitsCreated lists the declared limits of a create, one field per number or
// null, in key order.
func appendLimitsCreated(fields []FieldChange, path string, l map[string]any) []FieldChange {
	for _, k := range state.Meta(l).SortedKeys() {
		if m, ok := l[k].(map[string]any); ok {
			fields = appendLimitsCreated(fields, path+"."+k, m)
			continue
		}
		fields = append(fields, FieldChange{Field: path + "." + k, After: l[k]})
	}
	return fields
}

// declaredMetaDrift appends a change for every declared meta key whose remote value
// differs, and for the ownership marker when it is not this owner; both meta modes
// enforce at least these.
func (c *computer) declaredMetaDrift(fields []FieldChange, dm, rm state.Meta) []FieldChange {
	for k, dv := range dm {
		if k == state.OwnerKey {
			continue
		}
		if rv, ok := rm[k]; metaDrift(dv, rv, ok) {
			fields = append(fields, FieldChange{Field: "meta." + k, Before: rv, After: dv})
		}
	}
	if prev, _ := rm[state.OwnerKey].(string); prev != c.owner {
		fields = append(fields, FieldChange{Field: "meta." + state.OwnerKey, Before: rm[state.OwnerKey], After: c.owner})
	}
	return fields
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
