package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Strict mappings: unknown keys (with a "did you mean"), duplicate keys, wrong
// types, each at its position.

// describe names a node's kind and value for a message ("a list", "the integer 5").
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		switch n.ShortTag() {
		case tagNull:
			return "null"
		case tagBool:
			return "the boolean " + v
		case tagInt:
			return "the integer " + v
		case tagFloat:
			return "the number " + v
		case tagStr:
			return fmt.Sprintf("the string %q", v)
		default:
			return fmt.Sprintf("%q (%s)", v, n.ShortTag())
		}
	}
	return "an alias"
}

var objectWhere = map[string]string{
	objConfig:   "at the top level",
	objPrune:    "in prune",
	objDefaults: "in defaults",
	objUser:     "in a user",
	objLimits:   "in limits",
	objDatabase: "in limits.database",
	objFile:     "in limits.file",
	objAttach:   "in limits.attachment",
	objToken:    "in a token",
}

var objectA = map[string]string{
	objConfig:   "the top level",
	objPrune:    "prune",
	objUser:     "a user",
	objLimits:   "limits",
	objDatabase: "limits.database",
	objFile:     "limits.file",
	objAttach:   "limits.attachment",
	objToken:    "a token (under tokens)",
}

// objectKeyIndex maps each object's keys to their index in its table.
var objectKeyIndex = func() map[string]map[string]int {
	out := make(map[string]map[string]int, len(objects))
	for name, keys := range objects {
		if len(keys) > maxObjectKeys {
			panic("config: raise maxObjectKeys to " + strconv.Itoa(len(keys)))
		}
		idx := make(map[string]int, len(keys))
		for i, k := range keys {
			idx[k.name] = i
		}
		out[name] = idx
	}
	return out
}()

// optionalMapping is mapping for a key whose value may also be null or empty, meaning
// nothing (an empty "defaults:" or "prune:").
func (d *decoder) optionalMapping(n *yaml.Node, obj, what string) (*fieldMap, bool) {
	if r := d.resolve(n); r != nil && r.Kind == yaml.ScalarNode && r.ShortTag() == tagNull {
		return nil, false
	}
	return d.mapping(n, obj, what)
}

// mapping checks that n is a mapping whose keys are those of obj, reporting unknown
// and duplicate keys, and returns the known keys' entries.
func (d *decoder) mapping(n *yaml.Node, obj, what string) (*fieldMap, bool) {
	n = d.resolve(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping of keys to values, not %s", what, describe(n))
		return nil, false
	}
	index := objectKeyIndex[obj]
	out := &fieldMap{obj: obj}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i])
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "a key must be a plain word, not %s", describe(k))
			continue
		}
		name := k.Value
		j, known := index[name]
		if !known {
			d.unknownKey(k, obj)
			continue
		}
		if prev := out.e[j].key; prev != nil {
			d.errorf(k, "duplicate key %q: it is already set at line %d, column %d; remove one of the two", name, prev.Line, prev.Column)
			continue
		}
		out.e[j] = entry{k, n.Content[i+1]}
	}
	return out, true
}

func (d *decoder) unknownKey(k *yaml.Node, obj string) {
	name, where := k.Value, objectWhere[obj]
	switch {
	case name == "<<":
		d.errorf(k, `YAML merge keys ("<<") are not supported: use defaults for values that users share, or write the keys out`)
		return
	case obj == objDefaults && (name == "email" || name == "id" || name == "externalId"):
		d.errorf(k, `%q cannot be in defaults: it names one user; move it into the users`, name)
		return
	case obj == objDefaults && name == "alias":
		d.errorf(k, `"alias" cannot be in defaults: an alias is unique per partner account; give each user its own`)
		return
	case obj == objDefaults && name == "defaultTokens":
		d.errorf(k, `"defaultTokens" cannot be in defaults: it is how one user opts out of defaults.tokens; set it on that user`)
		return
	}
	if s := suggest(name, keyNames(objects[obj])); s != "" {
		d.errorf(k, "unknown key %q %s; did you mean %q?", name, where, s)
		return
	}
	for _, other := range []string{objUser, objToken, objLimits, objDatabase, objFile, objConfig, objPrune} {
		if other != obj && hasKey(other, name) && !(obj == objDefaults && other == objUser) {
			d.errorf(k, "unknown key %q %s; %q is a key of %s: move it there", name, where, name, objectA[other])
			return
		}
	}
	d.errorf(k, "unknown key %q %s; the keys allowed here are: %s", name, where, strings.Join(keyNames(objects[obj]), ", "))
}
