package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Users and their tokens: identities, emails, aliases, token names and
// durations.

// users reads the users list, merging the file's defaults under each user.
func (d *decoder) users(n *yaml.Node, defaults fields, fileExact state.Opt[bool]) []declaredUser {
	n = d.resolve(n)
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "users must be a list of users (lines starting with \"- email: ...\"), not %s", describe(n))
		return nil
	}
	if len(n.Content) > d.usersLeft {
		d.errorf(n.Content[d.usersLeft], "too many users: the files declare more than %d in total, the most cbk-sync manages in one run; split them across owners and run once per owner", MaxUsers)
		return nil
	}
	d.userItems = len(n.Content)
	out := make([]declaredUser, 0, len(n.Content))
	for _, item := range n.Content {
		if u, ok := d.user(item, defaults, fileExact); ok {
			out = append(out, u)
		}
	}
	return out
}

func (d *decoder) user(n *yaml.Node, defaults fields, fileExact state.Opt[bool]) (declaredUser, bool) {
	n = d.resolve(n)
	if n == nil {
		return declaredUser{}, false
	}
	m, ok := d.mapping(n, objUser, "a user")
	if !ok {
		return declaredUser{}, false
	}
	var du declaredUser
	u := &du.user
	u.Pos = d.pos(n)
	ok = d.identity(n, m, &du)

	if e, has := m.get("alias"); has {
		if v, sok := d.str(e.val, "alias"); !sok {
			ok = false
		} else if s, set := v.Get(); !set {
			d.errorf(e.val, "alias must be a string, not null: remove the key if the user has no alias (an update clears an alias the file does not declare)")
			ok = false
		} else if !state.ValidAlias(s) {
			d.errorf(e.val, "invalid alias %q: use 1 to 128 characters of a-z, 0-9, _ and -", s)
			ok = false
		} else {
			u.Alias, du.aliasPos = s, d.pos(e.val)
		}
	}

	f := mergeFields(defaults, d.fields(m))
	u.Name, u.Description, u.Image = f.name, f.description, f.image
	u.Meta, u.Limits = f.meta, f.limits
	u.MetaExact = f.exact.Value()
	if !f.exact.Present() {
		u.MetaExact = fileExact.Value()
	}
	u.ExclusiveTokens = f.exclusive.Value()

	var own []state.DesiredToken
	var ownRotate []bool
	e, hasOwn := m.get("tokens")
	if hasOwn {
		own, ownRotate = d.tokens(e.val)
	}
	useDefaults := defaults.tokens != nil
	if e, has := m.get("defaultTokens"); has {
		if b, bok := d.boolean(e.val, "defaultTokens"); bok {
			useDefaults = useDefaults && b
		}
	}
	switch {
	case useDefaults:
		u.ManageTokens = true
		u.Tokens = mergeTokens(defaults.tokens, own, ownRotate)
	case hasOwn:
		u.ManageTokens = true
		u.Tokens = own
	}
	return du, ok
}

// tokens reads a tokens list; rotateSet says, for each token read, whether it has the
// rotateAfter key (null included), which the merge with defaults.tokens needs.
func (d *decoder) tokens(n *yaml.Node) (out []state.DesiredToken, rotateSet []bool) {
	n = d.resolve(n)
	if n == nil {
		return nil, nil
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull {
		d.errorf(n, "tokens is null, which is ambiguous: write \"tokens: []\" to revoke all owned tokens, or remove the key to leave tokens unmanaged")
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "tokens must be a list of tokens (lines starting with \"- name: ...\"), not %s", describe(n))
		return nil, nil
	}
	out = make([]state.DesiredToken, 0, len(n.Content))
	rotateSet = make([]bool, 0, len(n.Content))
	seen := make(map[string]*yaml.Node, len(n.Content))
	for _, item := range n.Content {
		item = d.resolve(item)
		if item == nil {
			continue
		}
		m, ok := d.mapping(item, objToken, "a token")
		if !ok {
			continue
		}
		t := state.DesiredToken{Pos: d.pos(item)}
		e, has := m.get("name")
		if !has {
			d.errorf(item, `this token has no "name": add "name: <name>", unique within the user`)
			continue
		}
		name, ok := d.requiredString(e, "name")
		if !ok {
			continue
		}
		if prev, dup := seen[name]; dup {
			d.errorf(e.val, "duplicate token name %q: this user already declares it at line %d, column %d; rename or remove one", name, prev.Line, prev.Column)
			continue
		}
		seen[name] = e.val
		t.Name = name
		if e, ok := m.get("description"); ok {
			t.Description, _ = d.str(e.val, "description")
		}
		if e, ok := m.get("meta"); ok {
			t.Meta = d.meta(e.val, "meta", false)
		}
		e, rotate := m.get("rotateAfter")
		if rotate {
			t.RotateAfter = d.duration(e.val, "rotateAfter")
		}
		out = append(out, t)
		rotateSet = append(rotateSet, rotate)
	}
	return out, rotateSet
}

// duration reads a rotateAfter value; null means never (0).
func (d *decoder) duration(n *yaml.Node, path string) time.Duration {
	s, ok := d.scalarOf(n, path, "a duration")
	if !ok {
		return 0
	}
	if !s.expanded && s.node.ShortTag() == tagNull {
		return 0
	}
	v, err := parseDuration(s.text)
	if err != nil {
		d.errorf(s.node, "%s: %v", path, err)
		return 0
	}
	return v
}

// parseDuration reads a Go duration with an optional leading whole number of days:
// "30d", "1d12h", "720h", "90m".
func parseDuration(s string) (time.Duration, error) {
	const day = 24 * time.Hour
	bad := func() error {
		return fmt.Errorf("%q is not a duration: write a number with a unit, such as 30d, 720h or 90m (units: d, h, m, s, ms)", s)
	}
	rest, days := s, int64(0)
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		if i == 0 || strings.TrimLeft(s[:i], "0123456789") != "" {
			return 0, bad()
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n > int64(math.MaxInt64/day) {
			return 0, fmt.Errorf("%q is too long: use at most 100000d", s)
		}
		days, rest = n, s[i+1:]
		if rest != "" && (rest[0] == '+' || rest[0] == '-') {
			return 0, bad()
		}
	}
	var dur time.Duration
	if rest != "" {
		v, err := time.ParseDuration(rest)
		if err != nil {
			if strings.Contains(err.Error(), "invalid duration") || strings.Contains(err.Error(), "missing unit") || strings.Contains(err.Error(), "unknown unit") {
				return 0, bad()
			}
			return 0, fmt.Errorf("%q is too long: use at most 100000d", s)
		}
		dur = v
	}
	total := time.Duration(days) * day
	if dur > 0 && total > math.MaxInt64-dur {
		return 0, fmt.Errorf("%q is too long: use at most 100000d", s)
	}
	total += dur
	if total <= 0 {
		return 0, fmt.Errorf("%q must be greater than zero: give how old a token may get, such as 30d, or remove rotateAfter to never rotate", s)
	}
	return total, nil
}

// emailCharProblem says what makes s unfit as an identity, or "": a character that is
// invisible or steers the display (control and format characters: zero-width spaces and
// joiners, bidi overrides), a space, a private-use or unassigned code point, or a
// compatibility character such as the Kelvin sign U+212A that Unicode normalisation
// (NFKC) turns into another, ordinary one ("K"). Each lets two addresses that a
// reviewer reads as one be different users, or one user look like another.
func emailCharProblem(s string) string {
	if !utf8.ValidString(s) {
		return "it is not valid UTF-8; write the address in UTF-8"
	}
	for i, r := range []rune(s) {
		if ' ' <= r && r <= '~' {
			continue // printable ASCII is state.EmailProblem's to judge
		}
		at := fmt.Sprintf("U+%04X at character %d", r, i+1)
		switch {
		case unicode.IsControl(r):
			return "it has the control character " + at + "; remove it"
		case unicode.Is(unicode.Cf, r):
			return "it has the invisible format character " + at + " (a zero-width or text-direction control); remove it: it makes the address look like another one"
		case unicode.IsSpace(r) || unicode.In(r, unicode.Z):
			return "it has the space character " + at + "; remove it"
		case unicode.In(r, unicode.Co, unicode.Cs) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S):
			return "it has the unassigned or private-use character " + at + "; remove it"
		}
		if n := norm.NFKC.String(string(r)); n != string(r) {
			return fmt.Sprintf("it has the compatibility character %s, which stands for %q; write %q instead", at, n, n)
		}
	}
	return ""
}
