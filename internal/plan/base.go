package plan

import (
	"reflect"
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TokenListsNeeded decides which token lists a plan of head must read when it is
// reviewed as a change from base (plan --base): the users of head that declare tokens
// and that base does not have (by identity), or whose token declaration differs there —
// the tokens key present or not, names, descriptions, meta, rotateAfter,
// exclusiveTokens, or the metaMode that also applies to tokens. When the owner scope
// differs, every user that declares tokens. The answer is keyed by state.Identity.Key.
//
// The other users' token drift (someone's change behind cbk-sync's back, a token come
// of age for rotation) is then not checked: ComputePartial counts them, and the
// scheduled full plan checks them.
func TokenListsNeeded(base, head state.Desired) map[string]bool {
	before := make(map[string]*state.DesiredUser, len(base.Users))
	for i := range base.Users {
		before[base.Users[i].Identity().Key()] = &base.Users[i]
	}
	need := map[string]bool{}
	for i := range head.Users {
		u := &head.Users[i]
		if !u.ManageTokens {
			continue
		}
		key := u.Identity().Key()
		if b := before[key]; b == nil || base.Owner != head.Owner || base.ExternalIDKey != head.ExternalIDKey || tokensDiffer(b, u) {
			need[key] = true
		}
	}
	return need
}

// tokensDiffer reports whether two declarations of a user may plan its tokens
// differently. Positions do not count; the order of the tokens does not either.
func tokensDiffer(a, b *state.DesiredUser) bool {
	if a.ManageTokens != b.ManageTokens || a.ExclusiveTokens != b.ExclusiveTokens || a.MetaExact != b.MetaExact ||
		len(a.Tokens) != len(b.Tokens) {
		return true
	}
	ta, tb := sortedTokens(a.Tokens), sortedTokens(b.Tokens)
	for i := range ta {
		x, y := ta[i], tb[i]
		x.Pos, y.Pos = state.Pos{}, state.Pos{}
		if !reflect.DeepEqual(x, y) {
			return true
		}
	}
	return false
}

func sortedTokens(ts []state.DesiredToken) []state.DesiredToken {
	out := slices.Clone(ts)
	slices.SortStableFunc(out, func(a, b state.DesiredToken) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ComputePartial is Compute for an actual state that holds the token lists of only
// some of the users that declare tokens (those TokenListsNeeded chose): a user whose
// list was not read gets no token change, and Plan.TokensUnchecked counts it. It is
// as pure as Compute.
func ComputePartial(d state.Desired, a state.Actual, o Options) (Plan, error) {
	c := computer{d: d, a: a, o: o, owner: d.Owner, ownedOverride: -1, partialTokens: true, countUnchecked: true}
	return c.run()
}
