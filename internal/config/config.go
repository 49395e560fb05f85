// Package config reads the YAML configuration files into the desired state, strictly:
// every unknown key, wrong type and broken rule is reported with its file:line:column,
// all at once. It also renders remote state back as a config (Export) and describes
// the format as a JSON Schema (Schema).
//
// Format decisions beyond the v1 contract (docs/configuration.md):
//
//   - Several files: every file must say `version: 1` and the same `owner`. `users` of
//     all files are concatenated in the order the files are given (a directory's files in
//     lexical order) and emails must be unique across all of them. `prune.users` (true,
//     false or "release") applies to the whole run: files that set it must agree, and one
//     file setting it is enough.
//     `defaults` and the top-level `metaMode` apply to the users of their own file only,
//     so that a file can be read on its own.
//   - metaMode may be set at the top level of a file, in defaults, and per user; the
//     most specific wins (user, then defaults, then the file; merge when none does). It
//     also governs the meta of the user's tokens.
//   - A file holds one YAML document; a second one ("---") is an error. A directory
//     contributes its *.yaml and *.yml files, not its subdirectories nor hidden files. A
//     file named twice is read once.
//   - ${VAR} and ${VAR:-default} are expanded in scalar values (never in keys); as in
//     the shell the default also replaces an empty value, and $${ is a literal ${. An
//     expanded value takes its field's type ("tokens: ${N}" is a number); in meta, a
//     plain (unquoted) expanded value is typed as YAML would type its text, a quoted one
//     stays a string.
//   - rotateAfter is a Go duration with an optional leading whole number of days:
//     30d, 1d12h, 720h, 90m. It must be greater than zero; null means never.
//   - An empty `defaults:`, `prune:` or `users:` means nothing; `tokens: null` is an
//     error because it could mean either "unmanaged" or "revoke all".
//   - YAML anchors and aliases work, but the nodes aliases add to one file are capped
//     (an alias bomb is refused); merge keys (<<) are not supported.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Error is one problem in the configuration, at the position it was found.
type Error struct {
	Pos state.Pos
	Msg string
}

// Error formats the problem as "file:line:column: message", or "file: message" for a
// problem with a whole file (unreadable, too large, empty), or just the message when
// there is no file at all.
func (e Error) Error() string {
	if e.Pos.File == "" && e.Pos.Line == 0 {
		return e.Msg
	}
	if e.Pos.Line == 0 {
		return e.Pos.File + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Errors is every problem found, sorted by file, line, column.
type Errors []Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// Env is the environment ${VAR} reads: Lookup is os.LookupEnv in production (nil
// means no variable is set); Refuse, if set, is asked about every variable a value
// expands (value is "" when unset) and may refuse it: the error is reported at the
// variable's position, and nothing of the value is shown.
type Env struct {
	Lookup func(string) (string, bool)
	Refuse func(name, value string) error
}

// Load reads files and directories (a directory contributes its *.yaml/*.yml, lexical
// order, non-recursive) into the desired state. lookupEnv is os.LookupEnv in
// production; nil means no variable is set. Any error is an Errors.
func Load(paths []string, lookupEnv func(string) (string, bool)) (state.Desired, error) {
	return LoadEnv(paths, Env{Lookup: lookupEnv})
}

// LoadEnv is Load with variables that may be refused (Env.Refuse).
//
// A file that is a symbolic link to outside its configuration directory (the directory
// named, or the named file's own) may hold anything, a credential included: when it
// is not a valid configuration, the error names it but quotes none of its content.
func LoadEnv(paths []string, env Env) (state.Desired, error) {
	l := newLoader(env)
	if len(paths) == 0 {
		l.errs = append(l.errs, Error{Msg: "no configuration files given: name a file or a directory with -f"})
	}
	for _, p := range paths {
		l.path(p)
	}
	return l.finish()
}

// LoadBytes is Load for in-memory documents (tests, fuzzing); name is used in positions.
func LoadBytes(name string, data []byte, lookupEnv func(string) (string, bool)) (state.Desired, error) {
	return LoadBytesEnv(name, data, Env{Lookup: lookupEnv})
}

// LoadBytesEnv is LoadBytes with variables that may be refused (Env.Refuse).
func LoadBytesEnv(name string, data []byte, env Env) (state.Desired, error) {
	l := newLoader(env)
	l.bytes(name, data, "")
	return l.finish()
}

// loader reads the files one by one, then checks what spans files.
type loader struct {
	lookup func(string) (string, bool)
	refuse func(name, value string) error
	errs   Errors
	files  []fileConfig
	seen   map[string]bool
	users  int
}

func newLoader(env Env) *loader {
	lookup := env.Lookup
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	return &loader{lookup: lookup, refuse: env.Refuse, seen: map[string]bool{}}
}

func (l *loader) fileError(name, format string, args ...any) {
	l.errs = append(l.errs, Error{Pos: state.Pos{File: name}, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) path(p string) {
	fi, err := os.Stat(p)
	if err != nil {
		l.fileError(p, "cannot read: %v; check the path", unwrapPathError(err))
		return
	}
	if !fi.IsDir() {
		l.file(p, filepath.Dir(p))
		return
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		l.fileError(p, "cannot read the directory: %v", unwrapPathError(err))
		return
	}
	found := false
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		found = true
		if e.Type()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice) != 0 {
			// Opening a FIFO waits for a writer, for good if none comes: a directory's
			// files are read as files; a pipe is named with -f itself.
			l.fileError(filepath.Join(p, name), "is a named pipe, socket or device, not a regular file: a directory's *.yaml files must be files (name a pipe with -f itself)")
			continue
		}
		l.file(filepath.Join(p, name), p)
	}
	if !found {
		l.fileError(p, "the directory has no *.yaml or *.yml files: add one, or name the file itself")
	}
}

// file reads the configuration file p of the directory dir.
func (l *loader) file(p, dir string) {
	if abs, err := filepath.Abs(p); err == nil {
		if l.seen[abs] {
			return
		}
		l.seen[abs] = true
	}
	f, err := os.Open(p)
	if err != nil {
		l.fileError(p, "cannot read: %v; check the path and its permissions", unwrapPathError(err))
		return
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		if size = fi.Size(); size > MaxFileSize {
			l.tooLarge(p, size)
			return
		}
	}
	// The size can change between Stat and the read (or a pipe has none): read at most
	// one byte past the limit and look again.
	buf := bytes.NewBuffer(make([]byte, 0, size+512))
	_, err = buf.ReadFrom(io.LimitReader(f, MaxFileSize+1))
	data := buf.Bytes()
	if err != nil {
		l.fileError(p, "cannot read: %v", unwrapPathError(err))
		return
	}
	l.bytes(p, data, linkLeaving(p, dir))
}

// linkLeaving returns where p points when it is a symbolic link to outside dir, else "".
func linkLeaving(p, dir string) string {
	if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return ""
	}
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		return p
	}
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return target
	}
	if rel, err := filepath.Rel(base, target); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return target
	}
	return ""
}

func (l *loader) tooLarge(name string, size int64) {
	l.fileError(name, "the file is larger than 10 MiB (%d bytes), the most cbk-sync reads: split the users across several files", size)
}

// bytes decodes one file's data. outside, when set, is where the file, a symbolic link
// leaving its directory, points: its errors then quote nothing of it.
func (l *loader) bytes(name string, data []byte, outside string) {
	if len(data) > MaxFileSize {
		l.tooLarge(name, int64(len(data)))
		return
	}
	d := &decoder{file: name, lookup: l.lookup, refuse: l.refuse, data: data, usersLeft: MaxUsers - l.users}
	fc := d.decodeFile(data)
	if outside != "" && len(d.errs) > 0 {
		d.errs = []Error{{Pos: state.Pos{File: name}, Msg: fmt.Sprintf(
			"is a symbolic link to %s, outside the configuration directory, and is not a valid configuration (%d problems; its content is not shown): name the file itself, or remove the link", outside, len(d.errs))}}
	}
	l.errs = append(l.errs, d.errs...)
	l.users += d.userItems
	l.files = append(l.files, fc)
}

// finish checks what spans files (owner, prune, externalIdKey, unique identities and
// emails) and assembles the desired state.
func (l *loader) finish() (state.Desired, error) {
	var out state.Desired
	var ownerFrom, pruneFrom, extFrom *fileConfig
	n := 0
	for i := range l.files {
		fc := &l.files[i]
		n += len(fc.users)
		if fc.hasOwner {
			if ownerFrom == nil {
				ownerFrom, out.Owner = fc, fc.owner
			} else if fc.owner != ownerFrom.owner {
				l.errs = append(l.errs, Error{Pos: fc.ownerPos, Msg: fmt.Sprintf(
					"owner %q differs from %q set at %s: all files must have the same owner", fc.owner, ownerFrom.owner, ownerFrom.ownerPos)})
			}
		}
		if v, ok := fc.prune.Get(); ok {
			if pruneFrom == nil {
				pruneFrom, out.PruneUsers, out.ReleaseUsers = fc, v == "true", v == "release"
			} else if v != pruneFrom.prune.Value() {
				l.errs = append(l.errs, Error{Pos: fc.prunePos, Msg: fmt.Sprintf(
					"prune.users is %v here but %v at %s: the files that set prune.users must agree", v, pruneFrom.prune.Value(), pruneFrom.prunePos)})
			}
		}
		if fc.hasExtKey {
			if extFrom == nil {
				extFrom = fc
			} else if fc.extKey != extFrom.extKey {
				l.errs = append(l.errs, Error{Pos: fc.extKeyPos, Msg: fmt.Sprintf(
					"externalIdKey is %q here but %q at %s: the files that set externalIdKey must agree", fc.extKey, extFrom.extKey, extFrom.extKeyPos)})
			}
		}
	}
	extKey := state.DefaultExternalIDKey
	if extFrom != nil {
		extKey = extFrom.extKey
		if extKey != state.DefaultExternalIDKey {
			out.ExternalIDKey = extKey
		}
	}

	out.Users = make([]state.DesiredUser, 0, n)
	ids := newUniqueIdentities(n)
	aliases := make(map[string]state.Pos)
	for _, fc := range l.files {
		for _, du := range fc.users {
			if !ids.add(&l.errs, du) {
				continue
			}
			if a := du.user.Alias; a != "" {
				if prev, dup := aliases[a]; dup {
					l.errs = append(l.errs, Error{Pos: du.aliasPos, Msg: fmt.Sprintf(
						"duplicate alias %q: %s already declares it (an alias is unique per partner account); give one of the two users another alias", a, prev)})
					continue
				}
				aliases[a] = du.aliasPos
			}
			u := du.user
			if _, declared := u.Meta.Value()[extKey]; declared && !fc.hasExtKey {
				// The file's own key is checked where its meta declares it; another
				// file set the run's key.
				l.errs = append(l.errs, Error{Pos: u.Pos, Msg: fmt.Sprintf(
					"this user's meta declares %q, the externalIdKey set at %s: declare it as \"externalId: <value>\" instead", extKey, extFrom.extKeyPos)})
				continue
			}
			if u.ExternalID != "" {
				u.Meta, u.MetaExact = withExternalID(u.Meta, u.MetaExact, extKey, u.ExternalID)
			}
			out.Users = append(out.Users, u)
		}
	}
	if len(l.errs) > 0 {
		l.errs.sort()
		return state.Desired{}, l.errs
	}
	return out, nil
}

// unwrapPathError drops the path that *os.PathError repeats, since the message is
// already prefixed with it.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
