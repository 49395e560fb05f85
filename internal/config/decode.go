package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Bounds on the input, so that a hostile or broken file is refused fast and in bounded
// memory instead of exhausting the machine.
const (
	// MaxFileSize is the largest file Load reads.
	MaxFileSize = 10 << 20
	// MaxUsers is the most users all files together may declare.
	MaxUsers = 100_000
	// maxAliasNodes caps the nodes that YAML aliases may add to one file when expanded:
	// a "billion laughs" document is a few lines that expand to 10^9 nodes.
	maxAliasNodes = 100_000
)

const (
	tagNull  = "!!null"
	tagBool  = "!!bool"
	tagInt   = "!!int"
	tagFloat = "!!float"
	tagStr   = "!!str"
)

var ownerRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// ValidOwner reports whether s is a valid owner scope: 1 to 63 characters of a-z, 0-9
// and -. Commands that take an owner on the command line check it with this too.
func ValidOwner(s string) bool { return ownerRE.MatchString(s) }

// decoder turns one file's YAML node tree into its part of the desired state. It
// collects every problem instead of stopping at the first.
type decoder struct {
	file      string
	lookup    func(string) (string, bool)
	refuse    func(name, value string) error // Env.Refuse, or nil
	data      []byte                         // the file's text, to place a refused variable
	usersLeft int                            // how many users the files may still declare (MaxUsers overall)
	userItems int                            // how many users this file declares, valid or not

	errs       []Error
	sizes      map[*yaml.Node]int // expanded size of anchored nodes, -1 while being measured
	aliasNodes int

	metaNeedsNormalizing bool // a meta string is not valid UTF-8

	// extKey is the file's externalIdKey (state.DefaultExternalIDKey unless it sets
	// one): no user meta of the file may declare it.
	extKey string
}

// fileConfig is what one file declares.
type fileConfig struct {
	file     string
	owner    string
	ownerPos state.Pos
	hasOwner bool
	prune    state.Opt[string] // "true", "false" or "release"
	prunePos state.Pos
	// extKey is the file's externalIdKey; hasExtKey says the file set it (at extKeyPos).
	extKey    string
	extKeyPos state.Pos
	hasExtKey bool
	users     []declaredUser
}

type declaredUser struct {
	user     state.DesiredUser
	idPos    state.Pos
	extPos   state.Pos
	emailPos state.Pos
	aliasPos state.Pos
}

// fields are the user fields that defaults may also give; absent ones are not managed.
type fields struct {
	name, description, image state.Opt[string]
	meta                     state.Opt[state.Meta]
	exact                    state.Opt[bool] // metaMode
	limits                   state.Opt[state.Limits]
	exclusive                state.Opt[bool]
	// tokens are defaults.tokens (nil for a user's own fields, and when the defaults
	// declare none).
	tokens *tokenDefaults
}

type entry struct{ key, val *yaml.Node }

// maxObjectKeys is the most keys any object of the format has (a user's thirteen).
const maxObjectKeys = 13

// fieldMap holds the entries of one mapping by key, in a fixed array rather than a
// map: it is built for every user and token, and a map costs allocations.
type fieldMap struct {
	obj string
	e   [maxObjectKeys]entry
}

// get returns the entry of key, which must be a key of the object.
func (f *fieldMap) get(key string) (entry, bool) {
	i, ok := objectKeyIndex[f.obj][key]
	if !ok {
		panic("config: " + key + " is not a key of " + f.obj) // a bug in this package
	}
	return f.e[i], f.e[i].key != nil
}

func (d *decoder) pos(n *yaml.Node) state.Pos {
	return state.Pos{File: d.file, Line: n.Line, Column: n.Column}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, Error{Pos: d.pos(n), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) errorAt(p state.Pos, format string, args ...any) {
	d.errs = append(d.errs, Error{Pos: p, Msg: fmt.Sprintf(format, args...)})
}

// decodeFile parses data and decodes its single document.
func (d *decoder) decodeFile(data []byte) fileConfig {
	fc := fileConfig{file: d.file}
	root := d.parse(data)
	if root == nil {
		return fc
	}
	if !d.checkAliases(root) {
		return fc
	}
	if root.Kind == yaml.ScalarNode {
		// A file that is one scalar is not a configuration at all (a token file, a
		// note): what it holds is not quoted, as it may be a credential.
		d.errorf(root, "the file must be a mapping of keys to values, not a single value (not shown): is it a configuration file?")
		return fc
	}
	m, ok := d.mapping(root, objConfig, "the file")
	if !ok {
		return fc
	}
	rootPos := d.pos(root)

	if e, ok := m.get("version"); !ok {
		d.errorAt(rootPos, `missing "version": add "version: 1" at the top of the file`)
	} else if v, ok := d.integer(e.val, "version"); ok {
		if n, set := v.Get(); !set {
			d.errorf(e.val, `version must be 1, not null: set "version: 1"`)
		} else if n != 1 {
			d.errorf(e.val, `unsupported version %d: this cbk-sync reads version 1; set "version: 1"`, n)
		}
	}

	if e, ok := m.get("owner"); !ok {
		d.errorAt(rootPos, `missing "owner": add "owner: <scope>", the name (a-z, 0-9, -) that marks the users these files manage`)
	} else if s, ok := d.requiredString(e, "owner"); ok {
		if !ownerRE.MatchString(s) {
			d.errorf(e.val, "invalid owner %q: use 1 to 63 characters of a-z, 0-9 and -", s)
		} else {
			fc.owner, fc.ownerPos, fc.hasOwner = s, d.pos(e.val), true
		}
	}

	if e, ok := m.get("prune"); ok {
		if pm, ok := d.optionalMapping(e.val, objPrune, "prune"); ok {
			if pe, ok := pm.get("users"); ok {
				if mode, ok := d.pruneUsers(pe.val); ok {
					fc.prune, fc.prunePos = state.Some(mode), d.pos(pe.val)
				}
			}
		}
	}

	fc.extKey, d.extKey = state.DefaultExternalIDKey, state.DefaultExternalIDKey
	if e, ok := m.get("externalIdKey"); ok {
		if s, ok := d.requiredString(e, "externalIdKey"); ok {
			if why := externalIDKeyProblem(s); why != "" {
				d.errorf(e.val, "externalIdKey %q: %s", s, why)
			} else {
				fc.extKey, fc.extKeyPos, fc.hasExtKey, d.extKey = s, d.pos(e.val), true, s
			}
		}
	}

	var fileExact state.Opt[bool]
	if e, ok := m.get("metaMode"); ok {
		fileExact = d.metaMode(e.val, "metaMode")
	}

	var defaults fields
	if e, ok := m.get("defaults"); ok {
		if dm, ok := d.optionalMapping(e.val, objDefaults, "defaults"); ok {
			defaults = d.fields(dm)
			if te, ok := dm.get("tokens"); ok {
				defaults.tokens = d.defaultTokens(te.val)
			}
		}
	}

	if e, ok := m.get("users"); ok {
		fc.users = d.users(e.val, defaults, fileExact)
	}
	return fc
}

// parse reads the file's one YAML document and returns its root node, or nil after
// reporting why there is none.
func (d *decoder) parse(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; a config error must not
		// crash the tool.
		if r := recover(); r != nil {
			d.errorAt(state.Pos{File: d.file, Line: 1, Column: 1}, "the YAML parser failed (%v): check the file's syntax", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorAt(state.Pos{File: d.file}, `the file is empty: a config needs at least "version: 1" and "owner"`)
		} else {
			d.yamlError(err, data)
		}
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if err != nil || line == 0 {
			line = secondDocLine(data)
		}
		d.errorAt(state.Pos{File: d.file, Line: line, Column: 1},
			`a second YAML document starts here: put one document in each file (several files can be given, or a directory)`)
		return nil
	}
	if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == tagNull) {
		d.errorAt(state.Pos{File: d.file}, `the file is empty: a config needs at least "version: 1" and "owner"`)
		return nil
	}
	return doc.Content[0]
}

// secondDocLine finds the "---" that starts a second document, for when yaml.v3 does
// not say (the second document failed to parse).
func secondDocLine(data []byte) int {
	line, seen := 0, false
	for l := range bytes.Lines(data) {
		line++
		t := bytes.TrimRight(l, "\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			if seen {
				return line
			}
			seen = true
		} else if !seen && len(bytes.TrimSpace(t)) > 0 && t[0] != '#' && t[0] != '%' {
			seen = true // the first document started without "---"
		}
	}
	return 1
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a yaml.v3 syntax error into a positioned Error. yaml.v3 gives a
// line only, and not always the right one for tabs and control characters, so those
// are located by scanning the text.
func (d *decoder) yamlError(err error, data []byte) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	switch {
	case strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token"):
		if p, ok := findTab(data); ok {
			d.errorAt(state.Pos{File: d.file, Line: p.Line, Column: p.Column},
				"a tab character in the indentation: YAML indents with spaces only; replace the tab with spaces")
			return
		}
	case strings.Contains(msg, "control characters") || strings.Contains(msg, "UTF-8") || strings.Contains(msg, "utf-8"):
		if p, r, ok := findBadChar(data); ok {
			what := fmt.Sprintf("control character %U", r)
			if r == utf8.RuneError {
				what = "a byte that is not valid UTF-8"
			}
			d.errorAt(state.Pos{File: d.file, Line: p.Line, Column: p.Column},
				`%s, which YAML does not allow: remove it, or write it as an escape such as "\x01" in a double-quoted string`, what)
			return
		}
	}
	if p, ok := findEnvRef(data, line); ok {
		// yaml.v3 reads the braces of an unquoted ${VAR} in a flow collection as a
		// mapping, and then reports a line near it: point at the reference instead.
		d.errorAt(state.Pos{File: d.file, Line: p.Line, Column: p.Column},
			`invalid YAML: %s; inside { } or [ ], quote a variable reference: "${VAR}"`, msg)
		return
	}
	d.errorAt(state.Pos{File: d.file, Line: line, Column: 1},
		"invalid YAML: %s; check the indentation, colons and quotes on this line and the one before", msg)
}

// findEnvRef returns the first "${" on the lines around line (1-based) that is
// preceded on its line by a "{" or "[", that is, probably inside a flow collection.
func findEnvRef(data []byte, line int) (state.Pos, bool) {
	n := 0
	for l := range bytes.Lines(data) {
		n++
		if n < line-1 {
			continue
		}
		if n > line+1 {
			break
		}
		if i := bytes.Index(l, []byte("${")); i >= 0 && bytes.ContainsAny(l[:i], "{[") {
			return state.Pos{Line: n, Column: utf8.RuneCount(l[:i]) + 1}, true
		}
	}
	return state.Pos{}, false
}

// findTab returns the first tab that is part of a line's indentation.
func findTab(data []byte) (state.Pos, bool) {
	line := 0
	for l := range bytes.Lines(data) {
		line++
		col := 1
		for _, c := range l {
			if c == '\t' {
				return state.Pos{Line: line, Column: col}, true
			}
			if c != ' ' && c != '-' {
				break
			}
			col++
		}
	}
	return state.Pos{}, false
}

// findBadChar returns the first character YAML does not allow in a file.
func findBadChar(data []byte) (state.Pos, rune, bool) {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if (r == utf8.RuneError && size <= 1) || (unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' && r != 0x85) || r == 0xFEFF && i > 0 {
			return state.Pos{Line: line, Column: col}, r, true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return state.Pos{}, 0, false
}

// checkAliases walks the document as written, without following aliases, and adds up
// what every alias expands to. It refuses a document whose aliases expand to more than
// maxAliasNodes, or that has an alias inside its own anchor, before anything is
// decoded: so an alias bomb costs one pass over the text, not its expansion.
func (d *decoder) checkAliases(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return true
		}
		size := d.size(n.Alias)
		if size < 0 {
			d.errorf(n, "alias *%s refers to a node that contains the alias itself: YAML cannot expand that; write the value out", n.Value)
			return false
		}
		if d.aliasNodes += size; d.aliasNodes > maxAliasNodes {
			d.errorf(n, "YAML aliases in this file expand to more than %d nodes, which looks like an alias bomb: use fewer aliases (defaults can share values between users)", maxAliasNodes)
			return false
		}
		return true
	}
	for _, c := range n.Content {
		if !d.checkAliases(c) {
			return false
		}
	}
	return true
}

// resolve follows an alias to its anchored node (checkAliases has bounded them).
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

// size counts the nodes n expands to, following aliases, memoised so that nested
// aliases cost one visit each. It returns -1 for a node that contains itself.
func (d *decoder) size(n *yaml.Node) int {
	if d.sizes == nil {
		d.sizes = make(map[*yaml.Node]int)
	}
	if s, ok := d.sizes[n]; ok {
		return s
	}
	d.sizes[n] = -1
	s := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if s = d.size(n.Alias); s < 0 {
			return -1
		}
	}
	for _, c := range n.Content {
		cs := d.size(c)
		if cs < 0 {
			return -1
		}
		if s += cs; s > maxAliasNodes {
			s = maxAliasNodes + 1
			break
		}
	}
	d.sizes[n] = s
	return s
}

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

// mergeFields lays own over defaults: own values win, maps (meta, limits) merge
// recursively, scalars and lists replace.
func mergeFields(def, own fields) fields {
	out := own
	out.name = orDefault(own.name, def.name)
	out.description = orDefault(own.description, def.description)
	out.image = orDefault(own.image, def.image)
	out.exact = orDefault(own.exact, def.exact)
	out.exclusive = orDefault(own.exclusive, def.exclusive)

	dm, dset := def.meta.Get()
	om, oset := own.meta.Get()
	switch {
	case dset && oset:
		out.meta = state.Some(state.Meta(mergeMaps(dm, om)))
	case !own.meta.Present() && dset:
		// Each user gets its own copy, so no consumer can change another user's meta
		// through a shared map.
		out.meta = state.Some(state.Meta(cloneValue(map[string]any(dm)).(map[string]any)))
	case !own.meta.Present():
		out.meta = def.meta
	}

	dl, dset := def.limits.Get()
	ol, oset := own.limits.Get()
	switch {
	case dset && oset:
		out.limits = state.Some(state.Limits(mergeMaps(dl, ol)))
	case !own.limits.Present() && dset:
		out.limits = state.Some(dl.Clone())
	case !own.limits.Present():
		out.limits = def.limits
	}
	return out
}

func orDefault[T any](own, def state.Opt[T]) state.Opt[T] {
	if own.Present() {
		return own
	}
	return def
}

// mergeMaps returns a new map: def deep-copied, with own laid over it.
func mergeMaps(def, own map[string]any) map[string]any {
	out := make(map[string]any, len(def)+len(own))
	for k, v := range def {
		out[k] = cloneValue(v)
	}
	for k, v := range own {
		dv, dok := out[k].(map[string]any)
		ov, ook := v.(map[string]any)
		if dok && ook {
			out[k] = mergeMaps(dv, ov)
		} else {
			out[k] = v
		}
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

func hasKey(obj, key string) bool {
	_, ok := objectKeyIndex[obj][key]
	return ok
}

func lastSegment(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}
