package config

import (
	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The fields of a user (and of defaults), and limits: whole numbers, known
// sections, unknown keys refused at their position.

// fields reads the user fields that defaults may also give.
func (d *decoder) fields(m *fieldMap) fields {
	var f fields
	if e, ok := m.get("name"); ok {
		f.name, _ = d.str(e.val, "name")
	}
	if e, ok := m.get("description"); ok {
		f.description, _ = d.str(e.val, "description")
	}
	if e, ok := m.get("image"); ok {
		f.image, _ = d.str(e.val, "image")
	}
	if e, ok := m.get("meta"); ok {
		f.meta = d.meta(e.val, "meta", true)
	}
	if e, ok := m.get("metaMode"); ok {
		f.exact = d.metaMode(e.val, "metaMode")
	}
	if e, ok := m.get("limits"); ok {
		f.limits = d.limits(e.val)
	}
	if e, ok := m.get("exclusiveTokens"); ok {
		if b, ok := d.boolean(e.val, "exclusiveTokens"); ok {
			f.exclusive = state.Some(b)
		}
	}
	return f
}

// limitSections are the objects inside limits, by key.
var limitSections = []struct{ key, obj string }{{"database", objDatabase}, {"file", objFile}, {"attachment", objAttach}}

// limits reads a limits mapping into state.Limits: the declared keys only, numbers as
// float64 (the form the API's answers decode to), null as nil.
func (d *decoder) limits(n *yaml.Node) state.Opt[state.Limits] {
	if r := d.resolve(n); r != nil && r.Kind == yaml.ScalarNode && r.ShortTag() == tagNull {
		return state.Null[state.Limits]()
	}
	m, ok := d.mapping(n, objLimits, "limits")
	if !ok {
		return state.Opt[state.Limits]{}
	}
	l := state.Limits{}
	for _, k := range []string{"tokens", "conversations", "messages"} {
		d.limit(l, m, k, "limits.")
	}
	for _, sec := range limitSections {
		e, ok := m.get(sec.key)
		if !ok {
			continue
		}
		path := "limits." + sec.key
		if r := d.resolve(e.val); r != nil && r.Kind == yaml.ScalarNode && r.ShortTag() == tagNull {
			l[sec.key] = nil
		} else if sm, ok := d.mapping(e.val, sec.obj, path); ok {
			sl := map[string]any{}
			for _, spec := range objects[sec.obj] {
				d.limit(sl, sm, spec.name, path+".")
			}
			l[sec.key] = sl
		}
	}
	return state.Some(l)
}

// limit reads one declared limit of m into out: a whole number from 0 to
// state.MaxLimit, or null.
func (d *decoder) limit(out map[string]any, m *fieldMap, key, prefix string) {
	e, ok := m.get(key)
	if !ok {
		return
	}
	v, ok := d.integer(e.val, prefix+key)
	if !ok {
		return
	}
	n, set := v.Get()
	switch {
	case !set:
		out[key] = nil
	case n < 0:
		d.errorf(e.val, "%s%s is %d: a limit must be 0 or more", prefix, key, n)
	case n > state.MaxLimit:
		d.errorf(e.val, "%s%s is %d: a limit must be at most %d, the largest whole number the platform stores exactly", prefix, key, n, int64(state.MaxLimit))
	default:
		out[key] = float64(n)
	}
}
