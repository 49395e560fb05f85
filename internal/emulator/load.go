package emulator

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// load reads StatePath when it exists, then replays the journals beside it (see
// persist.go). A file that cannot be parsed or that breaks the API's rules (duplicate
// ids or emails) is an error naming the file. It returns the length of the current
// journal's whole changes, where appending goes on.
func (e *Emulator) load() (int64, error) {
	data, err := os.ReadFile(e.statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("emulator: reading state file %s: %w", e.statePath, err)
	default:
		if err := e.loadSnapshot(data); err != nil {
			return 0, err
		}
		// The file is the last snapshot: the journal is compacted once it outgrows
		// it, so compaction costs O(1) per write at any size (persist.go).
		e.countStats(func(s *PersistStats) { s.SnapshotSize = int64(len(data)) })
	}
	base := e.version
	rotated, err := e.rotatedJournals()
	if err != nil {
		return 0, err
	}
	for _, j := range rotated {
		if _, err := e.replay(j.path, base); err != nil {
			return 0, err
		}
	}
	return e.replay(e.journalPath(), base)
}

func (e *Emulator) loadSnapshot(data []byte) error {
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
		if err := e.loadUser(&u); err != nil {
			return bad("%s", err.msg)
		}
		for _, t := range fu.Tokens {
			if t == nil || t.ID == "" || e.idTaken(t.ID) {
				return bad("a token id of user %s is empty or not unique", u.ID)
			}
			e.loadToken(u.ID, t)
		}
	}
	for _, id := range sf.Foreign {
		if id == "" || e.idTaken(id) {
			return bad("foreign user id %q is empty or not unique", id)
		}
		e.foreign[id] = true
	}
	// The tombstones, oldest first (by the deleted item's creation), so the bound
	// drops the oldest first after a restart too.
	ids := make([]string, 0, len(sf.Gone))
	for id := range sf.Gone {
		if !e.idTaken(id) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return cmp.Or(cmp.Compare(sf.Gone[a], sf.Gone[b]), strings.Compare(a, b)) })
	for _, id := range ids {
		e.addGone(id, sf.Gone[id])
	}
	e.version = sf.Seq
	return nil
}

// loadUser stores a user read from the state file or the journal, new or replacing
// the one with its id, after checking what the API would refuse.
func (e *Emulator) loadUser(u *user) *apiError {
	u.Email, u.Name, u.Description, u.Image = orNull(u.Email), orNull(u.Name), orNull(u.Description), orNull(u.Image)
	u.Meta, u.Limits, u.Alias = orNull(u.Meta), orNull(u.Limits), orNull(u.Alias)
	if aerr := e.checkEmailFree(u.Email, u.ID); aerr != nil {
		return errBadRequest("email of user %s is used twice", u.ID)
	}
	if a, ok := u.Alias.Get(); ok && (!state.ValidAlias(a) || e.checkAliasFree(u.Alias, u.ID) != nil) {
		return errBadRequest("alias of user %s is invalid or used twice", u.ID)
	}
	if e.userByID[u.ID] != nil {
		e.replaceUser(u)
	} else {
		e.insertUser(u)
	}
	return nil
}

func (e *Emulator) loadToken(userID string, t *token) {
	t.Name, t.Description, t.Meta, t.Config = orNull(t.Name), orNull(t.Description), orNull(t.Meta), orNull(t.Config)
	if e.tokenByID[t.ID] != nil {
		e.replaceToken(userID, t)
	} else {
		e.insertToken(userID, t)
	}
}

// replay applies the changes of one journal after base and returns the length of its
// whole lines. The last line may be torn (a crash in the middle of an append, whose
// change was never answered): it is dropped. A bad line before the last is
// corruption.
func (e *Emulator) replay(path string, base uint64) (int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("emulator: reading journal %s: %w", path, err)
	}
	var good int64
	line := 0
	for len(data) > 0 {
		line++
		rec, rest, complete := bytes.Cut(data, []byte{'\n'})
		var c change
		err := json.Unmarshal(rec, &c)
		if err == nil && complete {
			err = e.apply(c, base)
		}
		if err != nil || !complete {
			if !complete || len(bytes.TrimRight(rest, "\x00\n")) == 0 {
				// The tail: a change cut short by a crash, never answered.
				return good, nil
			}
			return 0, fmt.Errorf("emulator: journal %s is corrupt at line %d: %v", path, line, err)
		}
		good += int64(len(rec) + 1)
		data = rest
	}
	return good, nil
}

// apply replays one journalled change that is newer than base.
func (e *Emulator) apply(c change, base uint64) error {
	if c.Seq <= base {
		return nil // the snapshot holds it
	}
	switch c.Op {
	case recUser:
		if c.User == nil || c.User.ID == "" {
			return errors.New("a user change without a user")
		}
		if aerr := e.loadUser(c.User); aerr != nil {
			return errors.New(aerr.msg)
		}
	case recToken:
		if c.Token == nil || c.Token.ID == "" || e.userByID[c.Owner] == nil {
			return errors.New("a token change without a token or its user")
		}
		e.loadToken(c.Owner, c.Token)
	case recDeleteUser:
		if u := e.userByID[c.ID]; u != nil {
			e.deleteUser(u)
		}
	case recDeleteToken:
		if t := e.tokenByID[c.ID]; t != nil {
			e.deleteToken(e.tokenUser[c.ID], t)
		}
	case recForeign:
		e.foreign[c.ID] = true
	default:
		return fmt.Errorf("unknown change %q", c.Op)
	}
	e.version = max(e.version, c.Seq)
	return nil
}
