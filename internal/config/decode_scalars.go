package config

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Scalars: strings, integers, booleans and the values of ${VAR}s, typed as
// their field says.

// scalar is a scalar value after ${VAR} expansion.
type scalar struct {
	node     *yaml.Node
	text     string
	expanded bool // the text came from a template, so the field's type decides its type
}

// tag returns the YAML type the value has as written. An expanded template takes the
// type its text would have as a plain scalar (so "${N}" can be a number), unless it
// was quoted.
func (s scalar) tag() string {
	if !s.expanded {
		return s.node.ShortTag()
	}
	if s.node.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return tagStr
	}
	return plainTag(s.text)
}

// typedTag is the type of the value for a field with a fixed non-string type: an
// expanded template is parsed as that type whether or not it was quoted.
func (s scalar) typedTag() string {
	if !s.expanded {
		return s.node.ShortTag()
	}
	return plainTag(s.text)
}

func plainTag(text string) string {
	return (&yaml.Node{Kind: yaml.ScalarNode, Value: text}).ShortTag()
}

// scalarOf resolves n, checks it is a scalar (want says what the field needs) and
// expands it.
func (d *decoder) scalarOf(n *yaml.Node, path, want string) (scalar, bool) {
	n = d.resolve(n)
	if n == nil {
		return scalar{}, false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%s must be %s, not %s", path, want, describe(n))
		return scalar{}, false
	}
	lookup := d.lookup
	var refused error
	refusedName := ""
	if d.refuse != nil {
		lookup = func(name string) (string, bool) {
			v, ok := d.lookup(name)
			if refused == nil {
				if refused = d.refuse(name, v); refused != nil {
					refusedName = name
				}
			}
			return v, ok
		}
	}
	text, changed, err := expand(n.Value, lookup)
	if refused != nil {
		d.errorAt(d.varPos(n, refusedName), "%s: %v", path, refused)
		return scalar{}, false
	}
	if err != nil {
		d.errorf(n, "%s: %v", path, err)
		return scalar{}, false
	}
	return scalar{node: n, text: text, expanded: changed}, true
}

// varPos is where "${name" is written in the scalar n: found in the file's text from
// n's position on (a quoted or folded scalar's value does not map column for column),
// else n's own position.
func (d *decoder) varPos(n *yaml.Node, name string) state.Pos {
	p := d.pos(n)
	line := 0
	for l := range bytes.Lines(d.data) {
		line++
		if line < n.Line {
			continue
		}
		if line > n.Line+maxVarSearchLines {
			break
		}
		runes := []rune(string(l))
		from := 0
		if line == n.Line {
			from = min(max(n.Column-1, 0), len(runes))
		}
		if i := strings.Index(string(runes[from:]), "${"+name); i >= 0 {
			return state.Pos{File: d.file, Line: line, Column: from + len([]rune(string(runes[from:])[:i])) + 1}
		}
	}
	return p
}

// maxVarSearchLines bounds how far below a scalar's start varPos looks.
const maxVarSearchLines = 100

// str reads a string field; null is state.Null.
func (d *decoder) str(n *yaml.Node, path string) (state.Opt[string], bool) {
	s, ok := d.scalarOf(n, path, "a string")
	if !ok {
		return state.Opt[string]{}, false
	}
	if s.expanded {
		return state.Some(s.text), true
	}
	switch s.node.ShortTag() {
	case tagStr:
		return state.Some(s.text), true
	case tagNull:
		return state.Null[string](), true
	}
	d.errorf(s.node, "%s must be a string, not %s; quote it if you mean the text: %s: %q", path, describe(s.node), lastSegment(path), s.text)
	return state.Opt[string]{}, false
}

// requiredString reads a string field that must not be null or empty.
func (d *decoder) requiredString(e entry, path string) (string, bool) {
	v, ok := d.str(e.val, path)
	if !ok {
		return "", false
	}
	if s, set := v.Get(); set && s != "" {
		return s, true
	}
	d.errorf(e.val, "%s must not be empty: give a value", path)
	return "", false
}

// integer reads a whole number; null is state.Null.
func (d *decoder) integer(n *yaml.Node, path string) (state.Opt[int64], bool) {
	s, ok := d.scalarOf(n, path, "a whole number")
	if !ok {
		return state.Opt[int64]{}, false
	}
	switch s.typedTag() {
	case tagNull:
		return state.Null[int64](), true
	case tagInt:
		if v, err := strconv.ParseInt(s.text, 10, 64); err == nil {
			return state.Some(v), true
		}
		var v int64
		if err := (&yaml.Node{Kind: yaml.ScalarNode, Tag: tagInt, Value: s.text}).Decode(&v); err == nil {
			return state.Some(v), true
		}
		d.errorf(s.node, "%s: %s is too large; use a whole number below 2^63", path, s.text)
		return state.Opt[int64]{}, false
	}
	d.errorf(s.node, "%s must be a whole number, not %s", path, describeScalar(s))
	return state.Opt[int64]{}, false
}

// boolean reads true or false; null is refused (it would be ambiguous).
func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	s, ok := d.scalarOf(n, path, "true or false")
	if !ok {
		return false, false
	}
	if s.typedTag() == tagBool {
		switch s.text {
		case "true", "True", "TRUE":
			return true, true
		case "false", "False", "FALSE":
			return false, true
		}
	}
	d.errorf(s.node, "%s must be true or false, not %s", path, describeScalar(s))
	return false, false
}

// pruneUsers reads prune.users: true (delete), false (keep), or "release" (remove
// cbk-sync's markers, delete nothing), as "true", "false" or "release".
func (d *decoder) pruneUsers(n *yaml.Node) (string, bool) {
	s, ok := d.scalarOf(n, "prune.users", `true, false or "release"`)
	if !ok {
		return "", false
	}
	switch {
	case s.typedTag() == tagBool && (s.text == "true" || s.text == "True" || s.text == "TRUE"):
		return "true", true
	case s.typedTag() == tagBool:
		return "false", true
	case (s.expanded || s.node.ShortTag() == tagStr) && s.text == "release":
		return "release", true
	}
	d.errorf(s.node, `prune.users must be true (delete owned users no file declares), false (keep them) or "release" (stop managing them: remove cbk-sync's marker, delete nothing), not %s`, describeScalar(s))
	return "", false
}

func describeScalar(s scalar) string {
	if s.expanded {
		return fmt.Sprintf("%q (from %s)", s.text, s.node.Value)
	}
	return describe(s.node)
}

// metaMode reads "merge" or "exact" as Some(exact).
func (d *decoder) metaMode(n *yaml.Node, path string) state.Opt[bool] {
	s, ok := d.scalarOf(n, path, `"merge" or "exact"`)
	if !ok {
		return state.Opt[bool]{}
	}
	if s.expanded || s.node.ShortTag() == tagStr {
		switch s.text {
		case "merge":
			return state.Some(false)
		case "exact":
			return state.Some(true)
		}
	}
	d.errorf(s.node, `%s must be "merge" (enforce the declared meta keys, keep others) or "exact" (the declared meta is the whole meta), not %s`, path, describeScalar(s))
	return state.Opt[bool]{}
}
