package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"

	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// stateFileVersion is the format version of the state file.
const stateFileVersion = 1

// stateFile is the persisted state: users with their tokens, oldest first. Token
// secrets are never part of it.
type stateFile struct {
	Version int              `json:"version"`
	Users   []fileUser       `json:"users"`
	Gone    map[string]int64 `json:"gone,omitempty"`
	// Foreign are the ids of users of another partner account (see PutForeignUser).
	Foreign []string `json:"foreignUsers,omitempty"`
}

type fileUser struct {
	user
	Tokens []*token `json:"tokens"`
}

// encodeState marshals the state; the caller holds e.mu.
func (e *Emulator) encodeState() ([]byte, error) {
	sf := stateFile{Version: stateFileVersion, Users: make([]fileUser, 0, len(e.users.items)), Gone: e.gone, Foreign: slices.Sorted(maps.Keys(e.foreign))}
	for _, u := range e.users.items {
		sf.Users = append(sf.Users, fileUser{user: *u, Tokens: e.tokens[u.ID].items})
	}
	return json.MarshalIndent(sf, "", "  ")
}

// Save writes the state to StatePath atomically: a temporary file in the same
// directory is written and synced, then renamed over the old one, so a crash leaves
// either the old file or the new one, never half of one. It does nothing without a
// StatePath.
func (e *Emulator) Save() error {
	if e.statePath == "" {
		return nil
	}
	e.mu.Lock()
	v := e.version
	e.mu.Unlock()
	return e.saveAtLeast(v, true)
}

// saveAtLeast makes the state of version v (or a later one) durable. This is group
// commit: the writes that arrive while one save is under way wait for it, and the
// first of them then saves one snapshot that holds every one of their changes, so the
// rest find their version already durable and return without writing. Each request is
// still answered only once its change is on disk (crash safety stays exact), with one
// fsync per group instead of one per write. force writes even when v is already
// saved (Save, which also writes a state that never was).
func (e *Emulator) saveAtLeast(v uint64, force bool) error {
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	if e.saved && e.savedVersion >= v && !force {
		return nil
	}
	e.mu.Lock()
	version := e.version
	data, err := e.encodeState()
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("emulator: encoding state: %w", err)
	}
	if err := atomicfile.WriteFunc(e.statePath, 0o600, func(w io.Writer) error { return e.writeState(w, data) }); err != nil {
		return fmt.Errorf("emulator: saving state to %s: %w", e.statePath, err)
	}
	e.savedVersion, e.saved = version, true
	return nil
}

// Close saves the state (see Save).
func (e *Emulator) Close() error { return e.Save() }

// load reads StatePath when it exists. A file that cannot be parsed or that breaks
// the API's rules (duplicate ids or emails) is an error naming the file.
func (e *Emulator) load() error {
	data, err := os.ReadFile(e.statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("emulator: reading state file %s: %w", e.statePath, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("emulator: state file %s is corrupt: %s", e.statePath, fmt.Sprintf(format, args...))
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return bad("%v", err)
	}
	if sf.Version != stateFileVersion {
		return bad("version is %d, want %d", sf.Version, stateFileVersion)
	}
	for _, fu := range sf.Users {
		u := fu.user
		if u.ID == "" || e.idTaken(u.ID) {
			return bad("user id %q is empty or not unique", u.ID)
		}
		u.Email, u.Name, u.Description, u.Image = orNull(u.Email), orNull(u.Name), orNull(u.Description), orNull(u.Image)
		u.Meta, u.Limits, u.Alias = orNull(u.Meta), orNull(u.Limits), orNull(u.Alias)
		if aerr := e.checkEmailFree(u.Email, ""); aerr != nil {
			return bad("email of user %s is used twice", u.ID)
		}
		if a, ok := u.Alias.Get(); ok && (!state.ValidAlias(a) || e.checkAliasFree(u.Alias, "") != nil) {
			return bad("alias of user %s is invalid or used twice", u.ID)
		}
		e.insertUser(&u)
		for _, t := range fu.Tokens {
			if t == nil || t.ID == "" || e.idTaken(t.ID) {
				return bad("a token id of user %s is empty or not unique", u.ID)
			}
			t.Name, t.Description, t.Meta, t.Config = orNull(t.Name), orNull(t.Description), orNull(t.Meta), orNull(t.Config)
			e.insertToken(u.ID, t)
		}
	}
	for _, id := range sf.Foreign {
		if id == "" || e.idTaken(id) {
			return bad("foreign user id %q is empty or not unique", id)
		}
		e.foreign[id] = true
	}
	for id, at := range sf.Gone {
		if !e.idTaken(id) {
			e.gone[id] = at
		}
	}
	return nil
}
