package plan

import (
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// stringDrift reports whether a declared string field differs from the remote one.
// Absent on either side never drifts (unmanaged, or unknown); null and "" are equal,
// since the API stores "" as null.
func stringDrift(d, r state.Opt[string]) bool {
	if d.Absent() || r.Absent() {
		return false
	}
	return d.Value() != r.Value()
}

func optAny[T any](o state.Opt[T]) any {
	if v, ok := o.Get(); ok {
		return v
	}
	return nil
}

func appendCreated(fields []FieldChange, name string, o state.Opt[string]) []FieldChange {
	if o.Absent() {
		return fields
	}
	return append(fields, FieldChange{Field: name, After: optAny(o)})
}

func appendMetaCreated(fields []FieldChange, m state.Meta) []FieldChange {
	for _, k := range m.SortedKeys() {
		fields = append(fields, FieldChange{Field: "meta." + k, After: m[k]})
	}
	return fields
}

// withMarker returns a copy of m with the ownership marker set to owner.
func withMarker(m state.Meta, owner string) state.Meta {
	out := make(state.Meta, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[state.OwnerKey] = owner
	return out
}

// metaChange compares declared meta d with remote meta r and returns the field changes
// appended to fields and the meta to send. adopt forces the marker to be written even
// when nothing else drifted; isToken ignores the creation nonce and the pending mark
// the apply engine writes into token meta, so that exact mode does not fight them.
func (c *computer) metaChange(fields []FieldChange, d state.Opt[state.Meta], exact bool, r state.Opt[state.Meta], adopt, isToken bool) ([]FieldChange, state.Opt[state.Meta], bool) {
	rm, known := r.Get()
	if !known && !r.IsNull() {
		// Unknown remote meta: compare nothing; an adoption still writes the marker.
		if !adopt {
			return fields, state.Opt[state.Meta]{}, false
		}
		want := withMarker(d.Value(), c.owner)
		for _, k := range want.SortedKeys() {
			fields = append(fields, FieldChange{Field: "meta." + k, After: want[k], BeforeUnknown: true})
		}
		merge := d.Absent() || (d.IsSet() && !exact)
		return fields, state.Some(want), merge
	}
	n := len(fields)
	switch {
	case d.Absent():
		// Meta is unmanaged: only the marker is enforced, merged in.
		if prev, _ := rm[state.OwnerKey].(string); prev != c.owner {
			fields = append(fields, FieldChange{Field: "meta." + state.OwnerKey, Before: rm[state.OwnerKey], After: c.owner})
			return fields, state.Some(state.Meta{state.OwnerKey: c.owner}), true
		}
		return fields, state.Opt[state.Meta]{}, false
	case d.IsNull() || exact:
		// The whole meta is enforced: declared keys plus the marker, nothing else.
		// Maps are walked directly and only drifted keys sorted, since this runs for
		// every user and token.
		dm := d.Value()
		fields = c.declaredMetaDrift(fields, dm, rm)
		for k, rv := range rm {
			if _, ok := dm[k]; ok || k == state.OwnerKey || (isToken && (k == state.NonceKey || k == state.PendingKey)) || rv == nil {
				continue
			}
			fields = append(fields, FieldChange{Field: "meta." + k, Before: rv, After: nil})
		}
		if len(fields) == n {
			return fields, state.Opt[state.Meta]{}, false
		}
		sortFields(fields[n:])
		return fields, state.Some(withMarker(dm, c.owner)), false
	default:
		// Merge: only the declared keys and the marker are compared.
		dm := d.Value()
		fields = c.declaredMetaDrift(fields, dm, rm)
		if len(fields) == n {
			return fields, state.Opt[state.Meta]{}, false
		}
		sortFields(fields[n:])
		return fields, state.Some(withMarker(dm, c.owner)), true
	}
}

// metaDrift reports whether a declared meta value differs from the remote one. A
// declared null equals a missing key, since storing null (merge or replace) may keep
// the key as null or drop it.
func metaDrift(dv, rv any, present bool) bool {
	if !present {
		return dv != nil
	}
	return !equalValue(dv, rv)
}

func sortFields(fs []FieldChange) {
	if len(fs) > 1 {
		slices.SortFunc(fs, func(x, y FieldChange) int { return strings.Compare(x.Field, y.Field) })
	}
}

// equalValue compares two JSON-shaped values, with fast paths for the scalar types
// meta nearly always holds.
func equalValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		if y, ok := b.(float64); ok {
			return x == y
		}
	}
	if b == nil {
		return false
	}
	return state.EqualJSON(a, b)
}

// limitsDrift compares only the declared limits; remote limits that are unknown
// (missing from the answer) are never compared.
func limitsDrift(fields []FieldChange, d state.Opt[state.Limits], r state.Opt[state.Limits]) ([]FieldChange, bool) {
	if d.Absent() || r.Absent() {
		return fields, false
	}
	if d.IsNull() {
		if r.IsNull() || len(r.Value()) == 0 {
			return fields, false
		}
		return append(fields, FieldChange{Field: "limits", Before: map[string]any(r.Value()), After: nil}), true
	}
	n := len(fields)
	fields = limitTreeDrift(fields, "limits", d.Value(), r.Value())
	sortFields(fields[n:])
	return fields, len(fields) > n
}

// limitTreeDrift compares the declared keys of one limits object with the remote
// object at the same place. Inside a limits object that the API returned, a missing
// key is not there (the object is stored whole), so it equals null; a declared object
// is compared key by key, and an empty one declares nothing.
func limitTreeDrift(fields []FieldChange, path string, d, r map[string]any) []FieldChange {
	for k, dv := range d {
		name := path + "." + k
		rv, present := r[k]
		if dm, ok := dv.(map[string]any); ok {
			rm, _ := rv.(map[string]any)
			fields = limitTreeDrift(fields, name, dm, rm)
			continue
		}
		if dv == nil {
			if present && rv != nil {
				fields = append(fields, FieldChange{Field: name, Before: rv, After: nil})
			}
			continue
		}
		if !present || !equalValue(dv, rv) {
			fields = append(fields, FieldChange{Field: name, Before: rv, After: dv})
		}
	}
	return fields
}

// appendLimitsCreated lists the declared limits of a create, one field per number or
// null, in key order.
func appendLimitsCreated(fields []FieldChange, path string, l map[string]any) []FieldChange {
	for _, k := range state.Meta(l).SortedKeys() {
		if m, ok := l[k].(map[string]any); ok {
			fields = appendLimitsCreated(fields, path+"."+k, m)
			continue
		}
		fields = append(fields, FieldChange{Field: path + "." + k, After: l[k]})
	}
	return fields
}

// declaredMetaDrift appends a change for every declared meta key whose remote value
// differs, and for the ownership marker when it is not this owner; both meta modes
// enforce at least these.
func (c *computer) declaredMetaDrift(fields []FieldChange, dm, rm state.Meta) []FieldChange {
	for k, dv := range dm {
		if k == state.OwnerKey {
			continue
		}
		if rv, ok := rm[k]; metaDrift(dv, rv, ok) {
			fields = append(fields, FieldChange{Field: "meta." + k, Before: rv, After: dv})
		}
	}
	if prev, _ := rm[state.OwnerKey].(string); prev != c.owner {
		fields = append(fields, FieldChange{Field: "meta." + state.OwnerKey, Before: rm[state.OwnerKey], After: c.owner})
	}
	return fields
}
