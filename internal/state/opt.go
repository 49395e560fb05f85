// Package state holds the domain types that both the desired side (config) and the
// actual side (client) are expressed in, so that plan can compare them directly.
package state

import (
	"bytes"
	"encoding/json"
)

type optKind uint8

const (
	kindAbsent optKind = iota
	kindNull
	kindSet
)

// Opt is a field that is absent, explicitly null, or set.
//
// On the desired side absent means "not managed" and null means "clear it"; on the
// actual side absent means "the API did not say" (unknown), which must never cause an
// update. The zero value is absent, and with the `omitzero` JSON tag an absent field is
// left out of a request body while a null one is sent as null.
type Opt[T any] struct {
	kind optKind
	val  T
}

// Some returns a set Opt holding v.
func Some[T any](v T) Opt[T] { return Opt[T]{kind: kindSet, val: v} }

// Null returns an Opt that is explicitly null.
func Null[T any]() Opt[T] { return Opt[T]{kind: kindNull} }

// Absent reports whether the field was not given at all.
func (o Opt[T]) Absent() bool { return o.kind == kindAbsent }

// IsNull reports whether the field is explicitly null.
func (o Opt[T]) IsNull() bool { return o.kind == kindNull }

// IsSet reports whether the field holds a value.
func (o Opt[T]) IsSet() bool { return o.kind == kindSet }

// Present reports whether the field is null or set, that is, known.
func (o Opt[T]) Present() bool { return o.kind != kindAbsent }

// Get returns the value and whether it is set.
func (o Opt[T]) Get() (T, bool) { return o.val, o.kind == kindSet }

// Value returns the value, or T's zero value when absent or null.
func (o Opt[T]) Value() T { return o.val }

// IsZero makes `omitzero` leave absent fields out of JSON.
func (o Opt[T]) IsZero() bool { return o.kind == kindAbsent }

// MarshalJSON writes null for a null or absent field, else the value.
func (o Opt[T]) MarshalJSON() ([]byte, error) {
	if o.kind != kindSet {
		return []byte("null"), nil
	}
	return json.Marshal(o.val)
}

// UnmarshalJSON is called only for keys that are in the document, so a missing key
// stays absent while a null one becomes null.
func (o *Opt[T]) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		var zero T
		*o = Opt[T]{kind: kindNull, val: zero}
		return nil
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*o = Opt[T]{kind: kindSet, val: v}
	return nil
}
