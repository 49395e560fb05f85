package plan

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// byteSource hands out small choices from fuzz input, zeros once it runs out.
type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) n(k int) int {
	if s.i >= len(s.b) {
		return 0
	}
	v := int(s.b[s.i]) % k
	s.i++
	return v
}

func (s *byteSource) str(pool ...string) state.Opt[string] {
	switch v := s.n(len(pool) + 2); v {
	case 0:
		return state.Opt[string]{}
	case 1:
		return state.Null[string]()
	default:
		return state.Some(pool[v-2])
	}
}

func (s *byteSource) meta(owner bool) state.Opt[state.Meta] {
	switch s.n(4) {
	case 0:
		return state.Opt[state.Meta]{}
	case 1:
		return state.Null[state.Meta]()
	}
	m := state.Meta{}
	for range s.n(3) {
		keys := []string{"team", "region", "n"}
		vals := []any{"a", "b", 1.0, nil, true}
		m[keys[s.n(len(keys))]] = vals[s.n(len(vals))]
	}
	if owner {
		switch s.n(3) {
		case 1:
			m[state.OwnerKey] = "own"
		case 2:
			m[state.OwnerKey] = "other"
		}
	}
	return state.Some(m)
}

func (s *byteSource) limits() state.Opt[state.Limits] {
	switch s.n(3) {
	case 0:
		return state.Opt[state.Limits]{}
	case 1:
		return state.Null[state.Limits]()
	}
	// num sets key in m to nothing (absent), null or a small number.
	num := func(m map[string]any, key string) {
		switch v := s.n(4); v {
		case 0:
		case 1:
			m[key] = nil
		default:
			m[key] = float64(v)
		}
	}
	section := func(l state.Limits, key string, keys ...string) {
		switch s.n(3) {
		case 1:
			l[key] = nil
		case 2:
			m := map[string]any{}
			for _, k := range keys {
				num(m, k)
			}
			l[key] = m
		}
	}
	l := state.Limits{}
	num(l, "tokens")
	num(l, "messages")
	section(l, "database", "files", "records")
	section(l, "file", "maxFileSize")
	// Unknown keys, which only the remote side has (the loader refuses them), at
	// any depth.
	section(l, "foo", "bar", "maxFileSize")
	return state.Some(l)
}

var fuzzEmails = []string{"a@x.test", "A@x.test", "b@x.test", "c@x.test"}

// fuzzInputs builds a small desired and actual state from fuzz bytes.
func fuzzInputs(b []byte) (state.Desired, state.Actual, Options) {
	s := &byteSource{b: b}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	o := DefaultOptions(now)
	o.Takeover = s.n(2) == 1
	o.MaxDeletes = s.n(3) - 1
	o.ForceDeletes = s.n(2) == 1
	d := state.Desired{Owner: "own", PruneUsers: s.n(2) == 1}
	seen := map[string]bool{}
	for range s.n(5) {
		email := fuzzEmails[s.n(len(fuzzEmails))]
		if seen[state.EmailKey(email)] {
			continue
		}
		seen[state.EmailKey(email)] = true
		u := state.DesiredUser{Email: state.Some(email), Name: s.str("N", "M"), Description: s.str("d\n1", "d\n2", ""),
			Image: s.str("i"), Meta: s.meta(false), MetaExact: s.n(3) == 0, Limits: s.limits()}
		if s.n(3) > 0 {
			u.ManageTokens = true
			u.ExclusiveTokens = s.n(3) == 0
			names := map[string]bool{}
			for range s.n(4) {
				name := []string{"ci", "cd", "ops"}[s.n(3)]
				if names[name] {
					continue
				}
				names[name] = true
				u.Tokens = append(u.Tokens, state.DesiredToken{Name: name, Description: s.str("x", ""),
					Meta: s.meta(false), RotateAfter: time.Duration(s.n(3)) * time.Hour})
			}
		}
		d.Users = append(d.Users, u)
	}
	a := state.Actual{Tokens: map[string][]state.Token{}}
	remoteSeen := map[string]bool{}
	for i := range s.n(6) {
		u := state.User{ID: fmt.Sprintf("u%d", i), CreatedAt: int64(s.n(3)), UpdatedAt: 1,
			Email: s.str(fuzzEmails...), Name: s.str("N", "O"), Description: s.str("d\n1", "d\n3"),
			Image: s.str("i", "j"), Meta: s.meta(true), Limits: s.limits()}
		// A declared email that several remote users have is refused (a
		// DuplicateError, tested on its own): the second one has no email instead.
		if k := state.EmailKey(u.Email.Value()); k != "" && remoteSeen[k] {
			u.Email = state.Null[string]()
		} else {
			remoteSeen[k] = true
		}
		a.Users = append(a.Users, u)
		if s.n(4) > 0 {
			var toks []state.Token
			for j := range s.n(4) {
				toks = append(toks, state.Token{ID: fmt.Sprintf("t%d.%d", i, j),
					CreatedAt: now.Add(-time.Duration(s.n(4)) * 45 * time.Minute).UnixMilli(),
					Name:      s.str("ci", "cd", "old"), Description: s.str("x", "y"), Meta: s.meta(true)})
			}
			a.Tokens[u.ID] = toks
		}
	}
	// Aliases last, so that the older seeds still build the same users: some declared
	// users declare one, and its lookup is missing, names no user, or names a user.
	for i := range d.Users {
		if s.n(2) == 0 {
			continue
		}
		alias := fmt.Sprintf("al-%d", i)
		d.Users[i].Alias = alias
		switch v := s.n(5); v {
		case 0:
		case 1:
			if a.Aliases == nil {
				a.Aliases = map[string]string{}
			}
			a.Aliases[alias] = ""
		default:
			if a.Aliases == nil {
				a.Aliases = map[string]string{}
			}
			a.Aliases[alias] = fmt.Sprintf("u%d", v-2)
		}
	}
	return d, a, o
}

func FuzzCompute(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 1, 1, 4, 0, 2, 3, 3, 2, 1, 3, 2, 1, 3, 2, 2, 3, 1, 0, 2, 5, 1, 1, 2, 3, 3, 3, 1, 2, 3})
	f.Add([]byte("the quick brown fox jumps over the lazy dog, twice: the quick brown fox jumps"))
	f.Add([]byte{0, 0, 2, 1, 4, 2, 2, 2, 3, 3, 3, 2, 2, 2, 2, 2, 1, 2, 3, 3, 3, 2, 2, 1, 2, 5, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, a, o := fuzzInputs(b)
		p, err := Compute(d, a, o)
		if err != nil {
			if errors.Is(err, ErrTokensNotRead) {
				return
			}
			t.Fatalf("Compute: %v", err)
		}
		if p.Safety.Safe != (len(p.Safety.Reasons) == 0) {
			t.Fatalf("safe=%v with reasons %q", p.Safety.Safe, p.Safety.Reasons)
		}
		assertConverges(t, d, a, &p, o)
	})
}
