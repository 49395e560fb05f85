package plan

import (
	"fmt"
	"slices"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ownership is how a remote object relates to this owner scope.
type ownership int

const (
	unmanaged ownership = iota
	owned
	foreign
)

// ownershipOf reads the owner marker in m: this owner, another one (returned), or
// none.
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

// match finds the remote user each declared user names (c.index: by id, external id
// or email, as state.UserIndex matches them) and plans the user as it goes: created
// when there is none, else brought to its declaration. It refuses what no plan can
// satisfy: a user with no identity, an id that does not exist, an identity declared
// twice, two declarations of one remote user. emailCreates counts the users created
// by email.
func (c *computer) match(users []state.User, owners []ownership) (matchedBy []int32, emailCreates int, err error) {
	// matchedBy holds, for each remote user, 1 + the index of the declared user that
	// names it. Only creates need a set of identities, which keeps a large
	// steady-state run from building one more 100,000-entry map.
	matchedBy = make([]int32, len(users))
	var created map[string]int
	c.plan.matched = newMatches(c.d.Users)
	for i := range c.d.Users {
		du := &c.d.Users[i]
		id := du.Identity()
		if id.IsZero() {
			return nil, 0, fmt.Errorf("plan: %s: the declared user has no id, externalId or email", where(du))
		}
		j, err := c.index.Match(du)
		if err != nil {
			return nil, 0, fmt.Errorf("plan: %s: %w", where(du), err)
		}
		if j < 0 {
			if id.Kind == state.ByID {
				return nil, 0, fmt.Errorf("plan: %s: user id %q does not exist on the platform, and an id cannot be created: correct the id, or declare the user by externalId or email to create it", where(du), du.ID)
			}
			key := id.Key()
			if prev, dup := created[key]; dup {
				return nil, 0, fmt.Errorf("plan: %s: %s is declared twice (also at %s)", where(du), id, where(&c.d.Users[prev]))
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
			return nil, 0, fmt.Errorf("plan: %s and %s both name user %s: declare it once", where(&c.d.Users[prev-1]), where(du), users[j].ID)
		}
		matchedBy[j] = int32(i + 1)
		c.plan.matched.set(i, du, &users[j])
		if err := c.existing(du, &users[j], owners[j]); err != nil {
			return nil, 0, err
		}
	}
	return matchedBy, emailCreates, nil
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
