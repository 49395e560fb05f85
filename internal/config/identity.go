package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// maxIdentityLen bounds an id or externalId: far above a CUID or a Stripe or Clerk
// key, and small enough to go into a URL path and a meta value.
const maxIdentityLen = 256

// identity reads the keys that name a user's sub-account, id, externalId and email,
// into du and reports whether they are valid. The user's identity is the first
// present of id, externalId, email; under id or externalId the email is an ordinary
// field (absent: unmanaged, null: cleared), under email it is required.
func (d *decoder) identity(n *yaml.Node, m *fieldMap, du *declaredUser) bool {
	u := &du.user
	ok := true
	idEntry, hasID := m.get("id")
	if hasID {
		if s, sok := d.requiredString(idEntry, "id"); !sok {
			ok = false
		} else if why := idProblem(s); why != "" {
			d.errorf(idEntry.val, "invalid id %+q: %s", s, why)
			ok = false
		} else {
			u.ID, du.idPos = s, d.pos(idEntry.val)
		}
	}
	extEntry, hasExt := m.get("externalId")
	if hasExt {
		if s, sok := d.requiredString(extEntry, "externalId"); !sok {
			ok = false
		} else if len(s) > maxIdentityLen {
			d.errorf(extEntry.val, "externalId is %d bytes long: at most %d", len(s), maxIdentityLen)
			ok = false
		} else {
			u.ExternalID, du.extPos = s, d.pos(extEntry.val)
		}
	}
	e, hasEmail := m.get("email")
	if !hasEmail {
		if !hasID && !hasExt {
			d.errorf(n, `this user has no identity: add "email: <address>", "externalId: <your own key for the user>" or "id: <the platform's user id>"`)
			ok = false
		}
		return ok
	}
	v, sok := d.str(e.val, "email")
	if !sok {
		return false
	}
	s, set := v.Get()
	switch {
	case !set && !hasID && !hasExt:
		d.errorf(e.val, `email is null, but it is this user's identity: give the address, or name the user by "id" or "externalId" (then "email: null" clears its email)`)
		return false
	case !set:
		u.Email, du.emailPos = v, d.pos(e.val)
		return ok
	case s == "":
		d.errorf(e.val, `email must not be empty: give an address, or write "email: null" to clear it (only under an id or externalId)`)
		return false
	}
	if why := emailProblem(s); why != "" {
		d.errorf(e.val, "%s", why)
		return false
	}
	u.Email, du.emailPos = v, d.pos(e.val)
	return ok
}

// idProblem says what makes s unfit as a platform user id, or "": an id goes into the
// API's URL paths, where "@" would make it an alias and "/" another route.
func idProblem(s string) string {
	if len(s) > maxIdentityLen {
		return fmt.Sprintf("it is %d bytes long: at most %d", len(s), maxIdentityLen)
	}
	if strings.HasPrefix(s, "@") {
		return `an id cannot start with "@" (that is how the API names an alias): write the user's platform id`
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune("/?#%\\", r) {
			return fmt.Sprintf("it contains %+q, which no platform id has: copy the id from `cbk-sync export --identity id` or the platform", string(r))
		}
	}
	return ""
}

// externalIDKeyProblem says what makes k unfit as the meta key of external ids, or ""
// (the rules of a declared meta key: the platform keeps it and its filter finds it).
func externalIDKeyProblem(k string) string {
	switch {
	case state.CbkSyncMetaKey(k):
		return "cbk-sync sets that meta key itself: choose another"
	case state.MetaKeyReserved(k) || !state.MetaKeyKeptOnUpdate(k):
		return "a meta key must start with a letter or digit (A-Z, a-z, 0-9), or the platform refuses or drops it"
	case strings.Contains(k, "."):
		return `it contains ".", which the API's meta filter reads as nesting: choose a key without one`
	case len(k) > 128:
		return "it is longer than 128 bytes"
	}
	return ""
}

// uniqueIdentities checks that no two declared users share an id, an externalId or an
// email (emails compare as state.EmailKey does), across all the files, and reports both
// positions of a duplicate.
type uniqueIdentities struct {
	ids, exts, emails map[string]state.Pos
}

func newUniqueIdentities(n int) *uniqueIdentities {
	return &uniqueIdentities{ids: map[string]state.Pos{}, exts: map[string]state.Pos{}, emails: make(map[string]state.Pos, n)}
}

// add records du's identities and reports whether none was declared before; a
// duplicate is appended to errs.
func (u *uniqueIdentities) add(errs *Errors, du declaredUser) bool {
	ok := true
	check := func(seen map[string]state.Pos, key string, pos state.Pos, what, value, note string) {
		if key == "" {
			return
		}
		if prev, dup := seen[key]; dup {
			*errs = append(*errs, Error{Pos: pos, Msg: fmt.Sprintf("duplicate %s %q: %s already declares it%s; remove or merge one of the two users", what, value, prev, note)})
			ok = false
			return
		}
		seen[key] = pos
	}
	user := &du.user
	check(u.ids, user.ID, du.idPos, "id", user.ID, "")
	check(u.exts, user.ExternalID, du.extPos, "externalId", user.ExternalID, "")
	if e, set := user.Email.Get(); set {
		check(u.emails, state.EmailKey(e), du.emailPos, "email", e, " (emails compare case-insensitively)")
	}
	return ok
}

// withExternalID returns the meta to enforce for a user with an externalId: its
// declared meta with the external id under key, so that a create stores it and an
// adoption or update enforces it like any declared key. A null meta (clear all) becomes
// the exact meta {key: id}.
func withExternalID(m state.Opt[state.Meta], exact bool, key, id string) (state.Opt[state.Meta], bool) {
	if m.IsNull() {
		return state.Some(state.Meta{key: id}), true
	}
	out := m.Value().Clone()
	if out == nil {
		out = state.Meta{}
	}
	out[key] = id
	return state.Some(out), exact
}

// CheckExternalIDKey reports why k cannot be the meta key of external ids, or nil;
// commands that take the key as a flag check it with this too.
func CheckExternalIDKey(k string) error {
	if k == "" {
		return errors.New("the key is empty")
	}
	if why := externalIDKeyProblem(k); why != "" {
		return fmt.Errorf("%q: %s", k, why)
	}
	return nil
}
