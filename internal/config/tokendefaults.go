package config

import (
	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// tokenDefaults are a file's defaults.tokens: the tokens every user of the file gets
// unless it sets defaultTokens: false.
type tokenDefaults struct {
	tokens []state.DesiredToken
}

// defaultTokens reads defaults.tokens. An empty list is refused: it would turn on token
// management (revoking owned tokens) for every user without declaring a token.
func (d *decoder) defaultTokens(n *yaml.Node) *tokenDefaults {
	if r := d.resolve(n); r != nil && r.Kind == yaml.SequenceNode && len(r.Content) == 0 {
		d.errorf(r, "defaults.tokens is empty: list the tokens every user of this file gets, or remove the key")
		return nil
	}
	toks, _ := d.tokens(n)
	if len(toks) == 0 {
		return nil
	}
	return &tokenDefaults{tokens: toks}
}

// mergeTokens lays a user's own tokens over the defaults, by name: a token the user
// declares with a default's name takes the user's description, meta (merged key by key
// into the default's, as user meta merges into defaults.meta; null replaces it) and
// rotateAfter where the user gives them, the default's otherwise, and the user's
// position. Defaults come first, in their order, then the user's other tokens.
func mergeTokens(def *tokenDefaults, own []state.DesiredToken, ownRotate []bool) []state.DesiredToken {
	byName := make(map[string]int, len(own))
	for i := range own {
		byName[own[i].Name] = i
	}
	out := make([]state.DesiredToken, 0, len(def.tokens)+len(own))
	used := make([]bool, len(own))
	for _, dt := range def.tokens {
		t := dt
		t.Meta = cloneMeta(dt.Meta)
		if j, ok := byName[dt.Name]; ok {
			used[j] = true
			ut := own[j]
			t.Pos = ut.Pos
			t.Description = orDefault(ut.Description, dt.Description)
			dm, dset := dt.Meta.Get()
			um, uset := ut.Meta.Get()
			switch {
			case dset && uset:
				t.Meta = state.Some(state.Meta(mergeMaps(dm, um)))
			case ut.Meta.Present():
				t.Meta = ut.Meta
			}
			if j < len(ownRotate) && ownRotate[j] {
				t.RotateAfter = ut.RotateAfter // null (never) included
			}
		}
		out = append(out, t)
	}
	for j := range own {
		if !used[j] {
			out = append(out, own[j])
		}
	}
	return out
}

// cloneMeta gives each user its own copy of a default's meta.
func cloneMeta(m state.Opt[state.Meta]) state.Opt[state.Meta] {
	if v, ok := m.Get(); ok {
		return state.Some(state.Meta(cloneValue(map[string]any(v)).(map[string]any)))
	}
	return m
}
