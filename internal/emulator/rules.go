package emulator

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The request bodies and the platform's rules for their values: meta keys kept,
// merged and hidden, limits, emails and aliases (docs/partner-api.md), and the meta
// filter of the listings.

// metaPatch is the meta of a request body: absent, null, a whole replacement, or a
// shallow merge ({"$update": {...}}).
type metaPatch struct {
	set   state.Opt[state.Meta]
	merge state.Meta // non-nil: merge these keys into the stored meta
}

func (p metaPatch) present() bool { return p.set.Present() || p.merge != nil }

// apply returns the meta after the patch. It never changes cur in place: stored meta
// maps are immutable, which lets snapshots share them outside the lock.
func (p metaPatch) apply(cur state.Opt[state.Meta]) state.Opt[state.Meta] {
	if p.merge == nil {
		return p.set
	}
	m := cur.Value().Clone()
	if m == nil {
		m = state.Meta{}
	}
	// A key set to null in $update is stored with a null value rather than removed:
	// the platform's behaviour is not documented and the simple rule is predictable.
	for k, v := range p.merge {
		m[k] = v
	}
	return state.Some(m)
}

// userPatch is a parsed, validated UserFields body.
type userPatch struct {
	Email, Name, Description, Image, Alias state.Opt[string]
	Meta                                   metaPatch
	Limits                                 state.Opt[state.Limits]
}

// tokenPatch is a parsed, validated TokenFields body.
type tokenPatch struct {
	Name, Description state.Opt[string]
	Meta              metaPatch
	Config            state.Opt[json.RawMessage]
}

// parseObject decodes a request body that must be a JSON object. Unknown fields are
// refused (the emulator is stricter than the platform, so client bugs such as sending
// "metaMerge" show up in tests).
func parseObject(body []byte) (map[string]json.RawMessage, *apiError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, errBadRequest("the request body must be a JSON object")
	}
	return m, nil
}

// parseUserPatch parses a user create (update false) or update body.
func parseUserPatch(body []byte, update bool) (userPatch, *apiError) {
	var p userPatch
	fields, aerr := parseObject(body)
	if aerr != nil {
		return p, aerr
	}
	for k, raw := range fields {
		var err *apiError
		switch k {
		case "email":
			p.Email, err = parseString(k, raw)
			if err == nil {
				p.Email, err = normaliseEmail(p.Email)
			}
		case "name":
			p.Name, err = parseString(k, raw)
		case "description":
			p.Description, err = parseString(k, raw)
		case "image":
			p.Image, err = parseString(k, raw)
		case "alias":
			p.Alias, err = parseString(k, raw)
			if err == nil {
				p.Alias, err = normaliseAlias(p.Alias)
			}
		case "meta":
			p.Meta, err = parseMeta(raw, update)
		case "limits":
			p.Limits, err = parseLimits(raw)
		default:
			err = errBadRequest("unknown field %q", k)
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// parseTokenPatch parses a token create (update false) or update body.
func parseTokenPatch(body []byte, update bool) (tokenPatch, *apiError) {
	var p tokenPatch
	fields, aerr := parseObject(body)
	if aerr != nil {
		return p, aerr
	}
	for k, raw := range fields {
		var err *apiError
		switch k {
		case "name", "description":
			var v state.Opt[string]
			if v, err = parseString(k, raw); err == nil && v.IsNull() {
				// The platform's validator lets null through to a non-null column
				// (default ""), and the database refuses it: a 500 on every attempt.
				err = &apiError{status: http.StatusInternalServerError, code: "INTERNAL_SERVER_ERROR", msg: "System error occurred"}
			}
			if k == "name" {
				p.Name = v
			} else {
				p.Description = v
			}
		case "meta":
			p.Meta, err = parseMeta(raw, update)
		case "config":
			if isNull(raw) {
				p.Config = state.Null[json.RawMessage]()
			} else if _, err2 := parseObject(raw); err2 != nil {
				err = errBadRequest("config must be an object or null")
			} else {
				p.Config = state.Some(slices.Clone(raw))
			}
		default:
			err = errBadRequest("unknown field %q", k)
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

func isNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

func parseString(field string, raw json.RawMessage) (state.Opt[string], *apiError) {
	if isNull(raw) {
		return state.Null[string](), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return state.Opt[string]{}, errBadRequest("%s must be a string or null", field)
	}
	return state.Some(s), nil
}

// normaliseAlias refuses an alias outside the platform's pattern ^[a-z0-9_-]*$ (at most
// 128 characters) and stores "" as null: an empty alias names no user.
func normaliseAlias(o state.Opt[string]) (state.Opt[string], *apiError) {
	s, ok := o.Get()
	if !ok {
		return o, nil
	}
	if s == "" {
		return state.Null[string](), nil
	}
	if !state.ValidAlias(s) {
		return o, errBadRequest("alias %q must match ^[a-z0-9_-]*$ and have at most 128 characters", s)
	}
	return o, nil
}

// normaliseEmail stores "" as null and refuses anything that is not a bare address.
func normaliseEmail(o state.Opt[string]) (state.Opt[string], *apiError) {
	s, ok := o.Get()
	if !ok {
		return o, nil
	}
	if s == "" {
		return state.Null[string](), nil
	}
	if why := state.EmailProblem(s); why != "" {
		return o, errBadRequest("email %q is not a valid address: %s", s, why)
	}
	return o, nil
}

// parseMeta parses a body's meta. On update the platform silently drops every
// top-level key whose first character is not a word character (state.MetaKeyKeptOnUpdate),
// in a replacement and in "$update" alike; create stores what it is given.
func parseMeta(raw json.RawMessage, update bool) (metaPatch, *apiError) {
	if isNull(raw) {
		return metaPatch{set: state.Null[state.Meta]()}, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return metaPatch{}, errBadRequest("meta must be an object or null")
	}
	// "$update" merges on update only: a create stores it literally, as a key.
	if upd, ok := m["$update"]; ok && update {
		um, isMap := upd.(map[string]any)
		if len(m) != 1 || !isMap {
			return metaPatch{}, errBadRequest(`meta with "$update" must be exactly {"$update": {...}}`)
		}
		if err := checkMetaKeys(um); err != nil {
			return metaPatch{}, err
		}
		if update {
			dropUnkeptKeys(um)
		}
		return metaPatch{merge: state.Meta(um)}, nil
	}
	if err := checkMetaKeys(m); err != nil {
		return metaPatch{}, err
	}
	if update {
		dropUnkeptKeys(m)
	}
	return metaPatch{set: state.Some(state.Meta(m))}, nil
}

// dropUnkeptKeys removes the top-level keys an update loses on the platform. m is a
// fresh map decoded from the body, so it may be changed in place.
func dropUnkeptKeys(m map[string]any) {
	for k := range m {
		if !state.MetaKeyKeptOnUpdate(k) {
			delete(m, k)
		}
	}
}

// hideMeta returns the meta as the platform shows it on read: without the keys that
// start with "#", at any depth. Stored meta is immutable, so a copy is made only of
// the objects that have such a key below them.
func hideMeta(o state.Opt[state.Meta]) state.Opt[state.Meta] {
	m, ok := o.Get()
	if !ok || m == nil {
		return o
	}
	if v, changed := hideValue(map[string]any(m)); changed {
		return state.Some(state.Meta(v.(map[string]any)))
	}
	return o
}

// hideLimits is hideMeta for limits: the platform hides "#" keys at any depth of any
// answer, limits included.
func hideLimits(o state.Opt[state.Limits]) state.Opt[state.Limits] {
	l, ok := o.Get()
	if !ok || l == nil {
		return o
	}
	if v, changed := hideValue(map[string]any(l)); changed {
		return state.Some(state.Limits(v.(map[string]any)))
	}
	return o
}

func hideValue(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			ne, changed := hideValue(e)
			if !state.MetaKeyHidden(k) && !changed {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(x))
				for k2, e2 := range x {
					if !state.MetaKeyHidden(k2) {
						out[k2] = e2
					}
				}
			}
			if !state.MetaKeyHidden(k) {
				out[k] = ne
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	case []any:
		var out []any
		for i, e := range x {
			ne, changed := hideValue(e)
			if !changed {
				continue
			}
			if out == nil {
				out = slices.Clone(x)
			}
			out[i] = ne
		}
		if out == nil {
			return v, false
		}
		return out, true
	}
	return v, false
}

func checkMetaKeys(m map[string]any) *apiError {
	for k := range m {
		if strings.HasPrefix(k, "_") {
			return errBadRequest("meta key %q is reserved: keys must not start with _", k)
		}
	}
	return nil
}

// parseLimits reads a body's limits: null, or an object stored as sent — unknown keys
// at any depth included, as the platform stores them — whose known limits
// (state.LimitPaths) are whole numbers 0 or more (5 and 5.0 alike), never null.
func parseLimits(raw json.RawMessage) (state.Opt[state.Limits], *apiError) {
	if isNull(raw) {
		return state.Null[state.Limits](), nil
	}
	var l map[string]any
	if err := json.Unmarshal(raw, &l); err != nil || l == nil {
		return state.Opt[state.Limits]{}, errBadRequest("limits must be an object or null")
	}
	if err := state.CheckWireLimits(l); err != nil {
		// The platform's zod schema: known keys and sections are optional, not
		// nullable, and one bad value fails the whole update.
		return state.Opt[state.Limits]{}, errBadRequest("limits contains an invalid value: %v", err)
	}
	return state.Some(state.Limits(l)), nil
}

// orNull turns an absent field into null: stored records know every field.
func orNull[T any](o state.Opt[T]) state.Opt[T] {
	if o.Absent() {
		return state.Null[T]()
	}
	return o
}

// validateMetaValue checks a meta from a seeding call (PutUser/PutToken) like the API
// checks one from a body, and brings its values into encoding/json's decoded form.
func validateMetaValue(m state.Opt[state.Meta]) (state.Opt[state.Meta], *apiError) {
	v, ok := m.Get()
	if !ok {
		return orNull(m), nil
	}
	if v == nil {
		return state.Null[state.Meta](), nil
	}
	if err := checkMetaKeys(v); err != nil {
		return m, err
	}
	n, err := state.NormalizeMeta(v)
	if err != nil {
		return m, errBadRequest("meta is not JSON: %v", err)
	}
	nm, _ := n.(map[string]any)
	return state.Some(state.Meta(nm)), nil
}

// validateLimitsValue checks a seeding call's limits like a body's, and brings them
// into encoding/json's decoded form.
func validateLimitsValue(o state.Opt[state.Limits]) (state.Opt[state.Limits], *apiError) {
	l, ok := o.Get()
	if !ok {
		return orNull(o), nil
	}
	if l == nil {
		return state.Null[state.Limits](), nil
	}
	n, err := state.NormalizeMeta(map[string]any(l))
	if err != nil {
		return o, errBadRequest("limits are not JSON: %v", err)
	}
	nl, _ := n.(map[string]any)
	if err := state.CheckLimits(nl); err != nil {
		return o, errBadRequest("%v", err)
	}
	return state.Some(state.Limits(nl)), nil
}

// cloneJSON deep-copies a value in encoding/json's decoded form, so that snapshots
// handed to callers cannot change the store.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[k] = cloneJSON(e)
		}
		return c
	case state.Meta:
		return state.Meta(cloneJSON(map[string]any(x)).(map[string]any))
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = cloneJSON(e)
		}
		return c
	default:
		return v
	}
}

func cloneMeta(o state.Opt[state.Meta]) state.Opt[state.Meta] {
	v, ok := o.Get()
	if !ok || v == nil {
		return o
	}
	return state.Some(cloneJSON(v).(state.Meta))
}

func cloneLimits(o state.Opt[state.Limits]) state.Opt[state.Limits] {
	v, ok := o.Get()
	if !ok || v == nil {
		return o
	}
	return state.Some(v.Clone())
}

// metaFilterPath reads a list query key that filters by meta, as the platform takes it
// (lib/filter.ts): `meta.K` or `meta[K]`, where K is a dotted path (a dot nests), and
// `meta[K][L]` nests too. It returns the dotted path.
func metaFilterPath(k string) (string, bool) {
	if path, ok := strings.CutPrefix(k, "meta."); ok {
		return path, path != ""
	}
	rest, ok := strings.CutPrefix(k, "meta[")
	if !ok {
		return "", false
	}
	var parts []string
	for {
		part, after, closed := strings.Cut(rest, "]")
		if !closed || part == "" {
			return "", false
		}
		parts = append(parts, part)
		if after == "" {
			return strings.Join(parts, "."), true
		}
		if rest, ok = strings.CutPrefix(after, "["); !ok {
			return "", false
		}
	}
}

// metaMatches reports whether the meta value at the dotted path equals want, compared
// as strings (a string as itself, anything else as its JSON).
func metaMatches(m state.Opt[state.Meta], path, want string) bool {
	var cur any = map[string]any(m.Value())
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = obj[part]; !ok {
			return false
		}
	}
	if s, ok := cur.(string); ok {
		return s == want
	}
	b, err := json.Marshal(cur)
	return err == nil && string(b) == want
}
