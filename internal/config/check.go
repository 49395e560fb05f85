package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// CheckDesired checks a desired state that did not come from configuration files (the
// one a saved plan carries, which anyone could have computed with the planner from a
// desired state of their own) against the rules configuration files obey: a valid
// owner and externalIdKey; every user named by a valid id, externalId or email, no
// identity twice, no email at the lock's reserved domain; valid aliases, limits and
// token names; no meta key cbk-sync sets itself (the owner marker: a desired state
// cannot claim a user for another owner) or the platform refuses. It returns every
// problem found, or nil.
func CheckDesired(d state.Desired) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !ValidOwner(d.Owner) {
		add("invalid owner %q: use 1 to 63 characters of a-z, 0-9 and -", d.Owner)
	}
	extKey := state.DefaultExternalIDKey
	if d.ExternalIDKey != "" {
		extKey = d.ExternalIDKey
		if why := externalIDKeyProblem(d.ExternalIDKey); why != "" {
			add("externalIdKey %q: %s", d.ExternalIDKey, why)
		}
	}
	seen := map[string]int{}
	once := func(i int, kind, key string) {
		if prev, dup := seen[kind+"\x00"+key]; dup {
			add("users %d and %d have the same %s %q", prev+1, i+1, kind, key)
			return
		}
		seen[kind+"\x00"+key] = i
	}
	for i, u := range d.Users {
		what := fmt.Sprintf("user %d", i+1)
		if u.ID != "" {
			if why := idProblem(u.ID); why != "" {
				add("%s: invalid id %+q: %s", what, u.ID, why)
			}
			once(i, "id", u.ID)
		}
		if u.ExternalID != "" {
			if len(u.ExternalID) > maxIdentityLen {
				add("%s: externalId is %d bytes long: at most %d", what, len(u.ExternalID), maxIdentityLen)
			}
			once(i, "externalId", u.ExternalID)
		}
		email, set := u.Email.Get()
		switch {
		case !set && u.ID == "" && u.ExternalID == "":
			add("%s has no identity (no id, externalId or email)", what)
		case set && email == "":
			add("%s: email must not be empty", what)
		case set:
			if why := emailProblem(email); why != "" {
				add("%s: %s", what, why)
			}
			once(i, "email", state.EmailKey(email))
		}
		if u.Alias != "" && !state.ValidAlias(u.Alias) {
			add("%s: invalid alias %q", what, u.Alias)
		}
		if l, ok := u.Limits.Get(); ok {
			if err := state.CheckLimits(l); err != nil {
				add("%s: %v", what, err)
			}
		}
		for k, v := range u.Meta.Value() {
			if k == extKey && u.ExternalID != "" && v == u.ExternalID {
				continue // where the loader puts the externalId
			}
			if why := metaKeyProblem(k); why != "" {
				add("%s: meta key %q %s", what, k, why)
			}
		}
		names := map[string]bool{}
		for j, t := range u.Tokens {
			switch {
			case t.Name == "":
				add("%s: token %d has no name", what, j+1)
			case names[t.Name]:
				add("%s: duplicate token name %q", what, t.Name)
			}
			names[t.Name] = true
			for k := range t.Meta.Value() {
				if why := metaKeyProblem(k); why != "" {
					add("%s token %q: meta key %q %s", what, t.Name, k, why)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// emailProblem says what makes s unfit as a declared email, or "": the rules of the
// configuration's email key (see identity).
func emailProblem(s string) string {
	if why := emailCharProblem(s); why != "" {
		return fmt.Sprintf("invalid email %+q: %s", s, why) // %+q: escaped to ASCII, so the culprit shows
	}
	if why := state.EmailProblem(s); why != "" {
		return fmt.Sprintf("invalid email %q: %s; the platform accepts only a plain address such as name@example.com", s, why)
	}
	if strings.HasSuffix(state.EmailKey(s), "@"+state.LeaseDomain) {
		return fmt.Sprintf("email %q: the domain %s is reserved for the lock cbk-sync takes on an account; use another address", s, state.LeaseDomain)
	}
	return ""
}

// metaKeyProblem says why k may not be a declared meta key, or "" (see meta).
func metaKeyProblem(k string) string {
	switch {
	case k == "":
		return "is empty"
	case state.CbkSyncMetaKey(k):
		return "is reserved: cbk-sync sets it itself"
	case state.MetaKeyReserved(k):
		return `starts with "_", which the API rejects`
	case !state.MetaKeyKeptOnUpdate(k):
		return "does not start with a letter or digit, so the platform drops it"
	}
	return ""
}
