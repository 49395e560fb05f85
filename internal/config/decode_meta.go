package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Meta: keys the platform would drop, hide or refuse are refused at their
// position.

// meta reads a meta mapping into encoding/json's form (state.NormalizeMeta). A user's
// meta (user true) may not declare the file's externalIdKey.
func (d *decoder) meta(n *yaml.Node, path string, user bool) state.Opt[state.Meta] {
	n = d.resolve(n)
	if n == nil {
		return state.Opt[state.Meta]{}
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull {
		return state.Null[state.Meta]()
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping of keys to values, not %s", path, describe(n))
		return state.Opt[state.Meta]{}
	}
	nerrs := len(d.errs)
	raw := make(map[string]any, len(n.Content)/2)
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i])
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "a %s key must be a plain word, not %s", path, describe(k))
			continue
		}
		key := k.Value
		if user && key == d.extKey {
			d.errorf(k, "%s key %q is this file's externalIdKey: declare it as \"externalId: <value>\" on the user instead (it is then the user's identity, and stored in meta under %q)", path, key, key)
			continue
		}
		switch {
		case key == "":
			d.errorf(k, "a %s key is empty: give it a name", path)
			continue
		case state.CbkSyncMetaKey(key):
			d.errorf(k, "%s key %q is reserved: cbk-sync sets it itself; remove it", path, key)
			continue
		case state.MetaKeyReserved(key):
			d.errorf(k, "%s key %q starts with \"_\", which the API rejects; rename it", path, key)
			continue
		case !state.MetaKeyKeptOnUpdate(key):
			// The platform drops such a key from every update (and hides # keys on
			// read), so declaring it would plan the same change on every run.
			first, _ := utf8.DecodeRuneInString(key)
			what := "silently drops on update"
			if state.MetaKeyHidden(key) {
				what = "hides on read and drops on update"
			}
			d.errorf(k, "%s key %q starts with %q, which the platform %s (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it", path, key, string(first), what)
			continue
		case strings.Contains(key, "."):
			d.errorf(k, "%s key %q contains \".\", which the API's meta filter reads as nesting; rename it (for example with - instead)", path, key)
			continue
		}
		if prev, dup := seen[key]; dup {
			d.errorf(k, "duplicate %s key %q: it is already set at line %d, column %d; remove one of the two", path, key, prev.Line, prev.Column)
			continue
		}
		seen[key] = k
		if v, ok := d.metaValue(n.Content[i+1], path+"."+key); ok {
			raw[key] = v
		}
	}
	if len(d.errs) > nerrs {
		return state.Opt[state.Meta]{}
	}
	// metaValue already gives encoding/json's decoded form, which is what
	// state.NormalizeMeta would return, without its marshalling round trip; only a
	// string that is not UTF-8 would differ, and it takes the slow path.
	if !d.metaNeedsNormalizing {
		return state.Some(state.Meta(raw))
	}
	d.metaNeedsNormalizing = false
	norm, err := state.NormalizeMeta(raw)
	if err != nil {
		d.errorf(n, "%s cannot be sent as JSON (%v): change the values", path, err)
		return state.Opt[state.Meta]{}
	}
	m, _ := norm.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return state.Some(state.Meta(m))
}

// metaValue converts a YAML value of meta into a JSON-compatible Go value.
func (d *decoder) metaValue(n *yaml.Node, path string) (any, bool) {
	n = d.resolve(n)
	if n == nil {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := d.resolve(n.Content[i])
			if k == nil {
				ok = false
				continue
			}
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, "a key in %s must be a plain word, not %s", path, describe(k))
				ok = false
				continue
			}
			if state.MetaKeyHidden(k.Value) {
				d.errorf(k, "key %q in %s starts with \"#\", which the platform hides on read at any depth, so it would be planned again on every run: rename it", k.Value, path)
				ok = false
				continue
			}
			if _, dup := out[k.Value]; dup {
				d.errorf(k, "duplicate key %q in %s: remove one of the two", k.Value, path)
				ok = false
				continue
			}
			v, vok := d.metaValue(n.Content[i+1], path+"."+k.Value)
			ok = ok && vok
			out[k.Value] = v
		}
		return out, ok
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, vok := d.metaValue(c, fmt.Sprintf("%s[%d]", path, i))
			ok = ok && vok
			out = append(out, v)
		}
		return out, ok
	case yaml.ScalarNode:
		s, ok := d.scalarOf(n, path, "a value")
		if !ok {
			return nil, false
		}
		switch tag := s.tag(); tag {
		case tagNull:
			return nil, true
		case tagBool:
			var b bool
			if err := (&yaml.Node{Kind: yaml.ScalarNode, Tag: tagBool, Value: s.text}).Decode(&b); err == nil {
				return b, true
			}
		case tagInt:
			// Numbers are float64, as encoding/json decodes them from the API.
			if v, err := strconv.ParseInt(s.text, 10, 64); err == nil {
				return float64(v), true
			}
			var v any
			if err := (&yaml.Node{Kind: yaml.ScalarNode, Tag: tagInt, Value: s.text}).Decode(&v); err == nil {
				switch v := v.(type) {
				case int:
					return float64(v), true
				case int64:
					return float64(v), true
				case uint64:
					return float64(v), true
				case float64:
					return v, true
				}
			}
		case tagFloat:
			var f float64
			if err := (&yaml.Node{Kind: yaml.ScalarNode, Tag: tagFloat, Value: s.text}).Decode(&f); err == nil {
				if math.IsInf(f, 0) || math.IsNaN(f) {
					d.errorf(n, "%s is %s, which JSON cannot hold: use a finite number or a string", path, s.text)
					return nil, false
				}
				return f, true
			}
		case tagStr, "!!timestamp", "!!binary":
			if !utf8.ValidString(s.text) {
				d.metaNeedsNormalizing = true
			}
			return s.text, true
		default:
			d.errorf(n, "%s has the YAML tag %s, which meta cannot hold: remove the tag", path, tag)
			return nil, false
		}
		d.errorf(n, "%s: %q is not a valid %s: fix the value or quote it", path, s.text, strings.TrimPrefix(s.tag(), "!!"))
		return nil, false
	}
	d.errorf(n, "%s has an unsupported YAML node: write a value", path)
	return nil, false
}
