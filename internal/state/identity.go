package state

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// IdentityKind is how a declared user names its sub-account. The zero value is
// ByEmail, the default when a user declares neither an id nor an externalId.
type IdentityKind uint8

// The identities, in reverse order of precedence: a user that declares several is
// named by the strongest (id, then externalId, then email); the others are ordinary
// fields.
const (
	ByEmail IdentityKind = iota
	ByExternalID
	ByID
)

var identityKindNames = [...]string{"email", "externalId", "id"}

// DefaultExternalIDKey is the meta key that holds a user's externalId when the files
// set no `externalIdKey`.
const DefaultExternalIDKey = "externalId"

// String returns the kind as the configuration spells its key: email, externalId, id.
func (k IdentityKind) String() string {
	if int(k) < len(identityKindNames) {
		return identityKindNames[k]
	}
	return fmt.Sprintf("IdentityKind(%d)", int(k))
}

// MarshalJSON writes the kind's name.
func (k IdentityKind) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// UnmarshalJSON reads a kind's name.
func (k *IdentityKind) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for i, n := range identityKindNames {
		if n == s {
			*k = IdentityKind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown identity kind %q (want email, externalId or id)", s)
}

// Identity is how a user is known to cbk-sync: a declared user by the identity its
// file gives it (Desired.Identity), a remote user no file declares by its email, or its
// id when it has none (User.Identity). Matching goes through UserIndex alone.
type Identity struct {
	Kind  IdentityKind `json:"kind"`
	Value string       `json:"value"`
}

// Key is the identity in the form identities compare in: emails with ASCII letters
// lower-cased (EmailKey), ids and external ids as they are, prefixed by the kind so that
// no two kinds can collide. Two identities name the same sub-account exactly when
// their keys are equal.
func (i Identity) Key() string {
	if i.Kind == ByEmail {
		return "email:" + EmailKey(i.Value)
	}
	return i.Kind.String() + ":" + i.Value
}

// String is the identity for messages: `email a@acme.test`, `id u_123`,
// `externalId cus_9`.
func (i Identity) String() string { return i.Kind.String() + " " + i.Value }

// IsZero reports an identity that names nothing.
func (i Identity) IsZero() bool { return i.Value == "" }

// Identity returns the identity the user declares: its id if it has one, else its
// externalId, else its email.
func (du *DesiredUser) Identity() Identity {
	switch {
	case du.ID != "":
		return Identity{Kind: ByID, Value: du.ID}
	case du.ExternalID != "":
		return Identity{Kind: ByExternalID, Value: du.ExternalID}
	}
	return Identity{Kind: ByEmail, Value: du.Email.Value()}
}

// Identity names a remote user that no file declares (an orphan, a delete): by its
// email when it has one, else by its id.
func (u *User) Identity() Identity {
	if e := u.Email.Value(); e != "" {
		return Identity{Kind: ByEmail, Value: e}
	}
	return Identity{Kind: ByID, Value: u.ID}
}

// ExternalIDOf returns the user's external id: the string under key in its meta. A
// missing, empty or non-string value is none.
func ExternalIDOf(u *User, key string) (string, bool) {
	m, ok := u.Meta.Get()
	if !ok {
		return "", false
	}
	s, ok := m[key].(string)
	return s, ok && s != ""
}

// DuplicateError is a declared identity that several remote users have: cbk-sync
// never guesses which one the file means.
type DuplicateError struct {
	Identity Identity
	IDs      []string // the users that have it, sorted
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%s is held by %d remote users (%s): cbk-sync will not guess which one the file means; declare the user by `id` instead",
		e.Identity, len(e.IDs), strings.Join(e.IDs, " and "))
}

// UserIndex finds remote users by identity. It is the one place where a declared user
// is matched to a remote one (plan, saved plans, export and the reads all ask it), and
// it holds the rule for duplicates: an identity that several users have is an error
// naming them, never a guess. Each kind's map is built on its first lookup, so an
// account matched by email alone never builds the others.
type UserIndex struct {
	users  []User
	extKey string
	built  [3]bool
	byKind [3]map[string]int // normalised value -> index of its first user
	dups   [3]map[string][]int
}

// NewUserIndex indexes users; externalIDKey is the meta key of the external ids ("" is
// DefaultExternalIDKey). The index keeps users, which must not change while it is used.
func NewUserIndex(users []User, externalIDKey string) *UserIndex {
	if externalIDKey == "" {
		externalIDKey = DefaultExternalIDKey
	}
	return &UserIndex{users: users, extKey: externalIDKey}
}

// Users returns the indexed users.
func (x *UserIndex) Users() []User { return x.users }

// valueOf returns the normalised value of user i under kind k, "" for none.
func (x *UserIndex) valueOf(k IdentityKind, i int) string {
	u := &x.users[i]
	switch k {
	case ByID:
		return u.ID
	case ByExternalID:
		s, _ := ExternalIDOf(u, x.extKey)
		return s
	}
	return EmailKey(u.Email.Value())
}

func normalValue(id Identity) string {
	if id.Kind == ByEmail {
		return EmailKey(id.Value)
	}
	return id.Value
}

func (x *UserIndex) build(k IdentityKind) {
	m := make(map[string]int, len(x.users))
	for i := range x.users {
		v := x.valueOf(k, i)
		if v == "" {
			continue
		}
		if j, ok := m[v]; ok {
			if x.dups[k] == nil {
				x.dups[k] = map[string][]int{}
			}
			if len(x.dups[k][v]) == 0 {
				x.dups[k][v] = []int{j}
			}
			x.dups[k][v] = append(x.dups[k][v], i)
			continue
		}
		m[v] = i
	}
	x.byKind[k], x.built[k] = m, true
}

// Find returns the index of the one user with identity id, or -1 when no user has it.
// Several users with it are a *DuplicateError.
func (x *UserIndex) Find(id Identity) (int, error) {
	v := normalValue(id)
	if v == "" || int(id.Kind) >= len(x.byKind) {
		return -1, nil
	}
	if !x.built[id.Kind] {
		x.build(id.Kind)
	}
	i, ok := x.byKind[id.Kind][v]
	if !ok {
		return -1, nil
	}
	if d := x.dups[id.Kind][v]; len(d) > 0 {
		ids := make([]string, len(d))
		for n, j := range d {
			ids[n] = x.users[j].ID
		}
		slices.Sort(ids)
		return -1, &DuplicateError{Identity: id, IDs: ids}
	}
	return i, nil
}

// Match returns the index of the remote user du names, or -1 when none does (a user
// to create). An externalId that no user has falls back on the declared email: the
// user with that email is matched if it has no external id yet, which is how a file
// moves from email to externalId identity without a create (the update then writes
// the external id); one with another external id is an error.
func (x *UserIndex) Match(du *DesiredUser) (int, error) {
	id := du.Identity()
	i, err := x.Find(id)
	if err != nil || i >= 0 || id.Kind != ByExternalID || du.Email.Value() == "" {
		return i, err
	}
	j, err := x.Find(Identity{Kind: ByEmail, Value: du.Email.Value()})
	if err != nil || j < 0 {
		return j, err
	}
	if other, ok := ExternalIDOf(&x.users[j], x.extKey); ok {
		return -1, fmt.Errorf("%s matches no user, and user %s, which has the declared email %s, has %s %q: fix the email or the externalId",
			id, x.users[j].ID, du.Email.Value(), x.extKey, other)
	}
	return j, nil
}

// Claims is the set of remote users a declared set may name, asked one user at a time
// while the listing streams (whose token lists to read, before the listing ends). It
// selects every user Match can give, and may select a few more (an email that an
// externalId user would fall back on); it decides nothing else.
type Claims struct {
	extKey string
	keys   [3]map[string]struct{}
}

// NewClaims returns an empty set for external ids under externalIDKey ("" is
// DefaultExternalIDKey).
func NewClaims(externalIDKey string) *Claims {
	if externalIDKey == "" {
		externalIDKey = DefaultExternalIDKey
	}
	return &Claims{extKey: externalIDKey}
}

// Add claims the users du may name.
func (c *Claims) Add(du *DesiredUser) {
	id := du.Identity()
	c.add(id)
	if id.Kind == ByExternalID {
		c.add(Identity{Kind: ByEmail, Value: du.Email.Value()})
	}
}

func (c *Claims) add(id Identity) {
	v := normalValue(id)
	if v == "" {
		return
	}
	if c.keys[id.Kind] == nil {
		c.keys[id.Kind] = map[string]struct{}{}
	}
	c.keys[id.Kind][v] = struct{}{}
}

// Has reports whether a declared user of the set may name u.
func (c *Claims) Has(u *User) bool {
	if _, ok := c.keys[ByID][u.ID]; ok {
		return true
	}
	if c.keys[ByExternalID] != nil {
		if s, ok := ExternalIDOf(u, c.extKey); ok {
			if _, ok := c.keys[ByExternalID][s]; ok {
				return true
			}
		}
	}
	if c.keys[ByEmail] != nil {
		if e := u.Email.Value(); e != "" {
			_, ok := c.keys[ByEmail][EmailKey(e)]
			return ok
		}
	}
	return false
}

// TokenKeepable reports whether t can be the remote token of a declared one: not an
// owned token still marked pending, whose secret was never confirmed delivered.
func TokenKeepable(t *Token, owner string) bool {
	return !(t.Pending() && t.Owner() == owner)
}

// PreferToken reports whether remote token x rather than y is the one a declared token
// of their shared name is (both keepable): a token owned by owner first, then the
// newest (a successor whose predecessor was not revoked), then the greatest ID, so
// that the choice is stable. The plan keeps that token and revokes or leaves the
// others; export writes that one. It is the only rule for same-named tokens.
func PreferToken(x, y *Token, owner string) bool {
	ox, oy := x.Owner() == owner, y.Owner() == owner
	if ox != oy {
		return ox
	}
	if x.CreatedAt != y.CreatedAt {
		return x.CreatedAt > y.CreatedAt
	}
	return x.ID > y.ID
}
