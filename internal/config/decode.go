package config

import (
	"fmt"
	"regexp"

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
