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

// smallTokenList is the size up to which token names are matched by a linear scan,
// which beats building a map for the two or three tokens a user usually has.
const smallTokenList = 8

// ErrTokensNotRead is wrapped by Compute's error when a user that declares tokens
// exists remotely but its token list is missing from the actual state: the reader must
// read it, since planning without it would revoke or recreate tokens blindly.
var ErrTokensNotRead = errors.New("token list not read")

// newUserTokens plans the tokens of a user to be created: each declared one is
// created (none when the user does not manage its tokens).
func (c *computer) newUserTokens(du *state.DesiredUser) []Change {
	if !du.ManageTokens {
		return nil
	}
	toks := make([]Change, 0, len(du.Tokens))
	for i := range du.Tokens {
		toks = append(toks, c.tokenCreate(du, &du.Tokens[i], "", TokenCreate, "declared and not found remotely"))
	}
	sortTokenChanges(toks)
	return toks
}

// userTokens appends the token changes of u, a remote user whose declaration manages
// its tokens, from its token list. Without the list the plan fails (ErrTokensNotRead),
// unless it is partial (partialTokens).
func (c *computer) userTokens(changes []Change, du *state.DesiredUser, u *state.User) ([]Change, error) {
	toks, ok := c.a.Tokens[u.ID]
	switch {
	case ok:
		return c.tokens(changes, du, u.ID, toks), nil
	case !c.partialTokens:
		return changes, fmt.Errorf("plan: user %s (%s) declares tokens: %w", label(du.Identity()), u.ID, ErrTokensNotRead)
	case c.countUnchecked:
		c.plan.TokensUnchecked++
	}
	// Else its tokens had no change when the plan was saved: not read again.
	return changes, nil
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

// tokens appends the token changes of an existing user that declares tokens: declared
// tokens first (create, rotate, update, by name), so that a successor exists before
// anything is revoked, then the revocations (by name, then ID).
func (c *computer) tokens(changes []Change, du *state.DesiredUser, userID string, remote []state.Token) []Change {
	decl := du.Tokens
	var byName map[string]int
	if len(decl) > smallTokenList {
		byName = make(map[string]int, len(decl))
		for i := range decl {
			byName[decl[i].Name] = i
		}
	}
	declIndex := func(t *state.Token) int {
		name, ok := t.Name.Get()
		if !ok {
			return -1
		}
		if byName != nil {
			if i, ok := byName[name]; ok {
				return i
			}
			return -1
		}
		for i := range decl {
			if decl[i].Name == name {
				return i
			}
		}
		return -1
	}

	// One pass picks, for each declared name, the remote token to keep.
	var buf, idxBuf [smallTokenList]int
	best := scratch(&buf, len(decl))
	for i := range best {
		best[i] = -1
	}
	idx := scratch(&idxBuf, len(remote)) // declared index of each remote token
	for i := range remote {
		if own, _ := c.ownershipOf(remote[i].Meta); own == owned && !remote[i].Pending() {
			c.ownedTokens++
		}
		di := declIndex(&remote[i])
		idx[i] = di
		// A pending token's secret was never confirmed delivered: it is never kept,
		// so it is never the successor of a rotation either.
		if di < 0 || !state.TokenKeepable(&remote[i], c.owner) {
			continue
		}
		if b := best[di]; b < 0 || state.PreferToken(&remote[i], &remote[b], c.owner) {
			best[di] = i
		}
	}

	start := len(changes)
	for di := range decl {
		dt := &decl[di]
		if best[di] < 0 {
			changes = append(changes, c.tokenCreate(du, dt, userID, TokenCreate, "declared and not found remotely"))
			continue
		}
		t := &remote[best[di]]
		if dt.RotateAfter > 0 && t.CreatedAt > 0 && !c.o.Now.IsZero() {
			age := c.o.Now.Sub(time.UnixMilli(t.CreatedAt))
			if age > dt.RotateAfter {
				ch := c.tokenCreate(du, dt, userID, TokenRotate,
					fmt.Sprintf("created %s ago, older than rotateAfter %s", humanDuration(age), humanDuration(dt.RotateAfter)))
				ch.TokenID = t.ID
				changes = append(changes, ch)
				continue
			}
		}
		own, prev := c.ownershipOf(t.Meta)
		if own == foreign && !c.o.Takeover {
			// Like a foreign user: adopting another owner's token needs --takeover.
			c.refuse(fmt.Sprintf("user %s: token %s (%s) is owned by %q; pass --takeover to adopt it", label(du.Identity()), dt.Name, t.ID, prev))
			continue
		}
		var fields []FieldChange
		var body state.TokenFields
		if stringDrift(dt.Description, t.Description) {
			body.Description = tokenText(dt.Description)
			fields = append(fields, FieldChange{Field: "description", Before: optAny(t.Description), After: optAny(body.Description)})
		}
		fields, body.Meta, body.MetaMerge = c.metaChange(fields, dt.Meta, du.MetaExact, t.Meta, own != owned, true)
		if len(fields) == 0 {
			continue
		}
		act, reason := TokenUpdate, "drifted from the configuration"
		switch own {
		case unmanaged:
			act, reason = TokenAdopt, "unmanaged token with a declared name: adopt it"
		case foreign:
			act, reason = TokenAdopt, fmt.Sprintf("owned by %q: taken over (--takeover)", prev)
			c.warn(fmt.Sprintf("user %s: token %s owned by %q is taken over (--takeover)", label(du.Identity()), dt.Name, prev))
		}
		changes = append(changes, Change{Action: act, UserID: userID, TokenName: dt.Name,
			TokenID: t.ID, Reason: reason, Fields: fields, TokenBody: tokenBodyPtr(body)})
	}
	sortTokenChanges(changes[start:])

	revStart := len(changes)
	for i := range remote {
		t := &remote[i]
		di := idx[i]
		if di >= 0 && best[di] == i {
			continue
		}
		own, _ := c.ownershipOf(t.Meta)
		var reason string
		switch {
		case own == owned && t.Pending():
			reason = ReasonPending
		case di >= 0 && own == owned:
			reason = "duplicate of the kept token with the same name"
			c.warn(fmt.Sprintf("user %s: several tokens named %s; keeping %s, revoking %s", label(du.Identity()), decl[di].Name, remote[best[di]].ID, t.ID))
		case di >= 0 && du.ExclusiveTokens:
			reason = "duplicate of the kept token with the same name (exclusiveTokens is true)"
		case di >= 0:
			c.warn(fmt.Sprintf("user %s: several tokens named %s; keeping unowned token %s as it is", label(du.Identity()), decl[di].Name, t.ID))
			continue
		case own == owned:
			reason = "owned and not declared"
		case du.ExclusiveTokens:
			reason = "not declared (exclusiveTokens is true)"
		default:
			continue
		}
		changes = append(changes, Change{Action: TokenRevoke, UserID: userID,
			TokenName: t.Name.Value(), TokenID: t.ID, Reason: reason})
	}
	sortTokenChanges(changes[revStart:])
	return changes
}

// ReasonPending is the Reason of a token_revoke of an owned token still marked pending.
const ReasonPending = "created but its secret was never confirmed delivered"

// tokenBodyPtr copies a body to the heap only for a planned change.
func tokenBodyPtr(b state.TokenFields) *state.TokenFields { return &b }

func sortTokenChanges(cs []Change) {
	if len(cs) < 2 {
		return
	}
	slices.SortStableFunc(cs, func(x, y Change) int {
		return cmp.Or(strings.Compare(x.TokenName, y.TokenName), strings.Compare(x.TokenID, y.TokenID))
	})
}

// humanDuration shows token ages in days when they are whole days or long ("45d",
// "45d3h"), since time.Duration's "1080h0m0s" is hard to read in a plan.
func humanDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d < day {
		return d.Round(time.Second).String()
	}
	d = d.Round(time.Hour)
	days, hours := d/day, (d%day)/time.Hour
	if hours == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, hours)
}

// scratch returns n ints, in buf when they fit, so that the usual small token lists
// need no allocation.
func scratch(buf *[smallTokenList]int, n int) []int {
	if n > smallTokenList {
		return make([]int, n)
	}
	return buf[:n]
}

// tokenText is what a token body sends for a declared name or description: a token's
// name and description are non-null columns (default "") whose validator lets null
// through to the database, which fails with a 500 on every attempt — so a declared
// null is sent as "", the value the platform stores for "none". A token listed with
// "" and one declared null therefore do not drift.
func tokenText(o state.Opt[string]) state.Opt[string] {
	if o.IsNull() {
		return state.Some("")
	}
	return o
}
