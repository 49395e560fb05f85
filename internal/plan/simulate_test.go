package plan

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// simulate applies p to a as the Partner API would (partial updates, meta $update as a
// shallow merge, limits replaced whole, cascading user delete, a nonce written into a
// created token's meta by the apply engine) and returns the new remote state. The
// input is not modified. Every user that declares tokens gets its token list read, as
// the reader would on the next run. Aliases follow the platform too: a body's alias
// moves to its user, and an update without one clears the user's alias; an alias that
// was looked up is looked up again.
func simulate(t testing.TB, d state.Desired, a state.Actual, p *Plan, now time.Time) state.Actual {
	t.Helper()
	out := state.Actual{Tokens: map[string][]state.Token{}}
	if a.Aliases != nil {
		out.Aliases = make(map[string]string, len(a.Aliases))
		for k, v := range a.Aliases {
			out.Aliases[k] = v
		}
	}
	// setAlias records what a write of body b to user id does to the aliases.
	setAlias := func(id string, b *state.UserFields, update bool) {
		if out.Aliases == nil {
			return
		}
		if update {
			for k, v := range out.Aliases {
				if v == id {
					out.Aliases[k] = ""
				}
			}
		}
		if al, ok := b.Alias.Get(); ok {
			if _, read := out.Aliases[al]; read {
				out.Aliases[al] = id
			}
		}
	}
	idx := map[string]int{}
	for _, u := range a.Users {
		u.Meta = cloneMetaOpt(u.Meta)
		idx[u.ID] = len(out.Users)
		out.Users = append(out.Users, u)
	}
	for id, toks := range a.Tokens {
		cp := make([]state.Token, len(toks))
		for i, tk := range toks {
			tk.Meta = cloneMetaOpt(tk.Meta)
			cp[i] = tk
		}
		out.Tokens[id] = cp
	}
	ms := now.UnixMilli()
	seq := 0
	nextID := func(prefix string) string {
		seq++
		return fmt.Sprintf("%s-sim-%d", prefix, seq)
	}
	deleted := map[string]bool{}
	for _, up := range p.Users {
		userID := up.UserID
		for _, c := range up.Changes {
			switch c.Action {
			case UserCreate:
				b := c.UserBody
				u := state.User{ID: nextID("u"), CreatedAt: ms, UpdatedAt: ms,
					Email: orNull(b.Email), Name: orNull(b.Name), Description: orNull(b.Description),
					Image: orNull(b.Image), Meta: orNull(cloneMetaOpt(b.Meta)), Limits: orNull(b.Limits)}
				userID = u.ID
				setAlias(u.ID, b, false)
				idx[u.ID] = len(out.Users)
				out.Users = append(out.Users, u)
				out.Tokens[u.ID] = []state.Token{}
			case UserUpdate, UserAdopt, UserRelease:
				u := &out.Users[idx[c.UserID]]
				b := c.UserBody
				setIfPresent(&u.Email, b.Email)
				setIfPresent(&u.Name, b.Name)
				setIfPresent(&u.Description, b.Description)
				setIfPresent(&u.Image, b.Image)
				u.Meta = applyMeta(u.Meta, b.Meta, b.MetaMerge)
				setIfPresent(&u.Limits, b.Limits)
				setAlias(u.ID, b, true)
				u.UpdatedAt = ms
			case UserDelete:
				deleted[c.UserID] = true
				delete(out.Tokens, c.UserID)
			case TokenCreate, TokenRotate:
				if userID == "" {
					t.Fatalf("token change %s/%s without a user", c.Email, c.TokenName)
				}
				b := c.TokenBody
				m := cloneMetaOpt(b.Meta).Value()
				if m == nil {
					m = state.Meta{}
				}
				m[state.NonceKey] = nextID("nonce")
				out.Tokens[userID] = append(out.Tokens[userID], state.Token{ID: nextID("t"), CreatedAt: ms, UpdatedAt: ms,
					Name: orNull(b.Name), Description: orNull(b.Description), Meta: state.Some(m)})
				if c.Action == TokenRotate {
					out.Tokens[userID] = removeToken(out.Tokens[userID], c.TokenID)
				}
			case TokenUpdate, TokenAdopt, TokenRelease:
				toks := out.Tokens[userID]
				found := false
				for i := range toks {
					if toks[i].ID == c.TokenID {
						found = true
						setIfPresent(&toks[i].Name, c.TokenBody.Name)
						setIfPresent(&toks[i].Description, c.TokenBody.Description)
						toks[i].Meta = applyMeta(toks[i].Meta, c.TokenBody.Meta, c.TokenBody.MetaMerge)
						toks[i].UpdatedAt = ms
					}
				}
				if !found {
					t.Fatalf("token_update of missing token %s", c.TokenID)
				}
			case TokenRevoke:
				out.Tokens[userID] = removeToken(out.Tokens[userID], c.TokenID)
			default:
				t.Fatalf("unexpected action %v", c.Action)
			}
		}
	}
	kept := out.Users[:0:0]
	for _, u := range out.Users {
		if !deleted[u.ID] {
			kept = append(kept, u)
		}
	}
	out.Users = kept
	// The next reader reads the token lists of every existing user that declares tokens.
	index := state.NewUserIndex(out.Users, d.ExternalIDKey)
	for i := range d.Users {
		du := &d.Users[i]
		if j, err := index.Match(du); err == nil && j >= 0 && du.ManageTokens {
			id := out.Users[j].ID
			if _, read := out.Tokens[id]; !read {
				out.Tokens[id] = []state.Token{}
			}
		}
	}
	return out
}

func orNull[T any](o state.Opt[T]) state.Opt[T] {
	if o.Absent() {
		return state.Null[T]()
	}
	return o
}

func setIfPresent[T any](dst *state.Opt[T], src state.Opt[T]) {
	if src.Present() {
		*dst = src
	}
}

func cloneMetaOpt(m state.Opt[state.Meta]) state.Opt[state.Meta] {
	if v, ok := m.Get(); ok {
		return state.Some(v.Clone())
	}
	return m
}

func applyMeta(cur, body state.Opt[state.Meta], merge bool) state.Opt[state.Meta] {
	switch {
	case body.Absent():
		return cur
	case body.IsNull():
		return body
	case !merge:
		return cloneMetaOpt(body)
	}
	m := cur.Value().Clone()
	if m == nil {
		m = state.Meta{}
	}
	for k, v := range body.Value() {
		m[k] = v
	}
	return state.Some(m)
}

func removeToken(toks []state.Token, id string) []state.Token {
	out := toks[:0:0]
	for _, t := range toks {
		if t.ID != id {
			out = append(out, t)
		}
	}
	return out
}

// assertConverges checks the central property: applying p and planning again gives no
// changes.
func assertConverges(t testing.TB, d state.Desired, a state.Actual, p *Plan, o Options) {
	t.Helper()
	next := simulate(t, d, a, p, o.Now)
	p2, err := Compute(d, next, o)
	if err != nil {
		t.Fatalf("second Compute: %v", err)
	}
	if !p2.Empty() {
		b, _ := json.MarshalIndent(p2.Users, "", "  ")
		t.Fatalf("plan after applying is not empty:\n%s", b)
	}
}
