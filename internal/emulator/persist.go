package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
)

// The state on disk (Options.StatePath = FILE) is a JSON snapshot, FILE, and with
// SaveOnWrite a journal of the changes made since, FILE.journal: one JSON line per
// change (a user or token stored whole, or a delete), appended and fsynced before the
// change is answered. So a write costs its own record, not the account: the whole
// state used to be re-encoded and rewritten on every save, under the lock every
// request takes, which at 100,000 users managed 6 writes per second.
//
// Group commit: the writes that arrive while one append is under way wait for it, and
// the first of them then appends every change made meanwhile in one write and one
// fsync; the rest find their change already durable (saveAtLeast).
//
// Compaction: once the journal has grown past the snapshot (and compactMin), the
// journal is rotated to FILE.journal.N, where N is the sequence number of its last
// change, and a new snapshot of the state as of N is written, atomically, from a
// copy-on-write clone of the indexes taken under the lock in O(1) and encoded outside
// it, while new changes go on into a new journal; then the rotated journals are
// removed. Its cost is O(N) once per O(N) bytes of changes, so O(1) per write. Save
// (Close: on shutdown) writes a whole snapshot and removes the journals, so a state
// file at rest is the plain JSON file it always was (examples/demo/remote-state.json
// loads as a seed and is written back in the same format).
//
// Loading reads FILE, then replays FILE.journal.N in order of N and FILE.journal,
// skipping the changes the snapshot already holds (its "seq"): a crash between any two
// steps above loses nothing that was answered. A journal torn at its tail by a crash
// in the middle of an append (a last line cut short: a change that was never
// answered) is cut back to its last whole line; a bad line followed by good ones is
// corruption and an error naming the file and line.
//
// Why a journal and not an embedded store such as bbolt (which the Go module proxy
// serves): the emulator serves every request from its in-memory indexes anyway, so a
// store would only duplicate them on disk in its own binary format, and the state file
// would stop being the JSON file the demo, the tests and people read and edit. A
// journal beside the JSON snapshot keeps that file and adds one append per change.

// stateFileVersion is the format version of the state file.
const stateFileVersion = 1

// stateFile is the persisted state: users with their tokens, oldest first. Token
// secrets are never part of it.
type stateFile struct {
	Version int `json:"version"`
	// Seq is the sequence number of the last journalled change the snapshot holds;
	// replay skips the changes up to it. 0 (absent) in a seed written by hand.
	Seq   uint64           `json:"seq,omitempty"`
	Users []fileUser       `json:"users"`
	Gone  map[string]int64 `json:"gone,omitempty"`
	// Foreign are the ids of users of another partner account (see PutForeignUser).
	Foreign []string `json:"foreignUsers,omitempty"`
}

type fileUser struct {
	user
	Tokens []*token `json:"tokens"`
}

// defaultCompactMin is the journal size below which it is never compacted: small
// states would otherwise be rewritten every few changes.
const defaultCompactMin = 1 << 20

// journalSuffix names the journal beside the state file.
const journalSuffix = ".journal"

// The kinds of a journalled change.
const (
	recUser        = "user"         // a user stored whole (created or updated)
	recToken       = "token"        // a token of Owner stored whole
	recDeleteUser  = "delete_user"  // a user deleted, with its tokens
	recDeleteToken = "delete_token" // a token deleted
	recForeign     = "foreign"      // a user of another partner account
)

// change is one journalled change. Records are immutable once stored, so a change
// can be encoded after the lock is released.
type change struct {
	Seq   uint64 `json:"seq"`
	Op    string `json:"op"`
	ID    string `json:"id,omitempty"`
	Owner string `json:"owner,omitempty"`
	User  *user  `json:"user,omitempty"`
	Token *token `json:"token,omitempty"`
}

// persister is the Emulator's state file and journal. Its fields are guarded by
// saveMu, except pending and journaling (e.mu) and stats (statsMu).
type persister struct {
	journaling bool     // SaveOnWrite with a StatePath, once loaded: changes are journalled
	loading    bool     // load is replaying: changes keep the sequence numbers they had
	pending    []change // changes made and not yet appended (guarded by e.mu)

	saveMu         sync.Mutex
	compactDone    *sync.Cond // signalled when a compaction ends (on saveMu)
	journal        *os.File   // the current journal, open for appending
	durable        uint64     // every change up to this sequence number is on disk
	broken         error      // an append failed: the journal may hold part of a group
	compactRunning bool
	compactMin     int64 // see defaultCompactMin; tests lower it

	statsMu sync.Mutex
	stats   PersistStats

	// writeState writes an encoded snapshot, writeJournal a group of changes; tests
	// replace them to simulate a crash in the middle of a write.
	writeState   func(w io.Writer, data []byte) error
	writeJournal func(w io.Writer, data []byte) error
}

func writeAll(w io.Writer, data []byte) error {
	_, err := w.Write(data)
	return err
}

// openState loads StatePath and its journals, and with SaveOnWrite opens the journal
// for appending after its last whole change. The caller is New.
func (e *Emulator) openState() error {
	e.compactDone = sync.NewCond(&e.saveMu)
	e.writeState, e.writeJournal = writeAll, writeAll
	e.compactMin = defaultCompactMin
	if e.statePath == "" {
		return nil
	}
	e.loading = true
	size, err := e.load()
	e.loading = false
	if err != nil {
		return err
	}
	e.durable = e.version
	if !e.saveOnWrite {
		return nil
	}
	e.journaling = true
	return e.openJournal(size)
}

// snapshot is the state as of one sequence number, cloned under the lock in O(1) (the
// indexes are copy-on-write; gone is bounded, foreign small) and encoded outside it.
type snapshot struct {
	seq     uint64
	users   *ordered[*user]
	tokens  *ordered[*token]
	gone    map[string]int64
	foreign []string
}

// snapshotLocked clones the state; the caller holds e.mu.
func (e *Emulator) snapshotLocked() *snapshot {
	return &snapshot{seq: e.version, users: e.users.clone(), tokens: e.tokens.clone(),
		gone: maps.Clone(e.gone), foreign: slices.Sorted(maps.Keys(e.foreign))}
}

// encode marshals the snapshot as the state file, without any lock.
func (s *snapshot) encode() ([]byte, error) {
	sf := stateFile{Version: stateFileVersion, Seq: s.seq, Users: make([]fileUser, 0, s.users.len()), Gone: s.gone, Foreign: s.foreign}
	s.users.each("", func(u *user) bool {
		ts := []*token{}
		s.tokens.each(u.ID, func(t *token) bool { ts = append(ts, t); return true })
		sf.Users = append(sf.Users, fileUser{user: *u, Tokens: ts})
		return true
	})
	if len(sf.Gone) == 0 {
		sf.Gone = nil
	}
	return json.MarshalIndent(sf, "", "  ")
}

// logChange records a change; the caller holds e.mu. Every change bumps the version,
// its sequence number; with a journal it also waits for the next append.
func (e *Emulator) logChange(c change) {
	if e.loading {
		return // load sets the version from the file
	}
	e.version++
	if e.journaling {
		c.Seq = e.version
		e.pending = append(e.pending, c)
	}
}

// PersistStats describe the state file's persistence since New.
type PersistStats struct {
	Appends          int64 // journal appends (each one write and one fsync, for a group of changes)
	Changes          int64 // changes appended
	JournalBytes     int64 // the current journal's size
	Compactions      int64 // snapshots written by compaction
	CompactionErrors int64 // compactions that failed (their journals stay, and are retried)
	Snapshots        int64 // snapshots written in all (compactions, Save, Close)
	SnapshotSize     int64 // the last snapshot's size in bytes
}

// PersistStats returns the counters of the state file's persistence.
func (e *Emulator) PersistStats() PersistStats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	return e.stats
}

func (e *Emulator) countStats(f func(*PersistStats)) {
	e.statsMu.Lock()
	f(&e.stats)
	e.statsMu.Unlock()
}

// Save writes the whole state to StatePath as a snapshot, atomically (a crash leaves
// the old file or the new one, never half of one), and removes the journals it makes
// redundant. It does nothing without a StatePath.
func (e *Emulator) Save() error {
	if e.statePath == "" {
		return nil
	}
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	return e.saveLocked(e.saveOnWrite)
}

// saveLocked is Save; the caller holds saveMu. reopen opens a new, empty journal.
func (e *Emulator) saveLocked(reopen bool) error {
	for e.compactRunning {
		e.compactDone.Wait() // it writes the same file, from an older state
	}
	e.mu.Lock()
	e.pending = nil // the snapshot holds them
	snap := e.snapshotLocked()
	e.mu.Unlock()
	if err := e.writeSnapshot(snap); err != nil {
		return err
	}
	if err := e.resetJournals(reopen); err != nil {
		return err
	}
	e.durable, e.broken = snap.seq, nil
	return nil
}

// writeSnapshot encodes snap and writes it to StatePath atomically.
func (e *Emulator) writeSnapshot(snap *snapshot) error {
	data, err := snap.encode()
	if err != nil {
		return fmt.Errorf("emulator: encoding state: %w", err)
	}
	if err := atomicfile.WriteFunc(e.statePath, 0o600, func(w io.Writer) error { return e.writeState(w, data) }); err != nil {
		return fmt.Errorf("emulator: saving state to %s: %w", e.statePath, err)
	}
	e.countStats(func(s *PersistStats) { s.Snapshots++; s.SnapshotSize = int64(len(data)) })
	return nil
}

// resetJournals removes every journal (the snapshot just written holds their changes)
// and, with reopen, opens an empty one. The caller holds saveMu.
func (e *Emulator) resetJournals(reopen bool) error {
	if e.journal != nil {
		_ = e.journal.Close()
		e.journal = nil
	}
	rotated, err := e.rotatedJournals()
	if err != nil {
		return err
	}
	for _, j := range rotated {
		if err := os.Remove(j.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("emulator: removing %s: %w", j.path, err)
		}
	}
	if err := os.Remove(e.journalPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("emulator: removing %s: %w", e.journalPath(), err)
	}
	e.countStats(func(s *PersistStats) { s.JournalBytes = 0 })
	if !reopen {
		return nil
	}
	return e.openJournal(0)
}

func (e *Emulator) journalPath() string { return e.statePath + journalSuffix }

// openJournal opens the current journal for appending, cut back to size bytes.
func (e *Emulator) openJournal(size int64) error {
	f, err := os.OpenFile(e.journalPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("emulator: opening the journal: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return fmt.Errorf("emulator: cutting the journal %s back to its last whole change: %w", e.journalPath(), err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		_ = f.Close()
		return fmt.Errorf("emulator: opening the journal: %w", err)
	}
	e.journal = f
	e.countStats(func(s *PersistStats) { s.JournalBytes = size })
	return atomicfile.SyncDir(filepath.Dir(e.journalPath()))
}

// saveAtLeast makes the changes up to version v durable: the first caller appends
// every pending change in one write and one fsync, and the callers that waited
// meanwhile find theirs already appended (group commit). Each request is answered
// only once its change is on disk.
func (e *Emulator) saveAtLeast(v uint64) error {
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	if e.durable >= v {
		return nil
	}
	if e.journal == nil {
		return errors.New("emulator: the state file is closed")
	}
	if e.broken != nil {
		// An append failed: the journal may hold part of a group. Only a whole
		// snapshot, which holds every change, repairs it.
		return e.saveLocked(true)
	}
	st := e.PersistStats()
	e.mu.Lock()
	batch, top := e.pending, e.version
	e.pending = nil
	var snap *snapshot
	compact := !e.compactRunning && st.JournalBytes >= max(e.compactMin, st.SnapshotSize)
	if compact {
		snap = e.snapshotLocked()
	}
	e.mu.Unlock()

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range batch {
		if err := enc.Encode(&batch[i]); err != nil {
			e.broken = err
			return fmt.Errorf("emulator: encoding a change: %w", err)
		}
	}
	if err := e.writeJournal(e.journal, buf.Bytes()); err != nil {
		e.broken = err
		return fmt.Errorf("emulator: appending to %s: %w", e.journalPath(), err)
	}
	if err := e.journal.Sync(); err != nil {
		e.broken = err
		return fmt.Errorf("emulator: syncing %s: %w", e.journalPath(), err)
	}
	e.durable = top
	e.countStats(func(s *PersistStats) { s.Appends++; s.Changes += int64(len(batch)); s.JournalBytes += int64(buf.Len()) })
	if compact {
		if err := e.rotate(snap); err != nil {
			e.broken = err
			return err
		}
	}
	return nil
}

// rotate renames the journal, which holds exactly the changes up to snap.seq, to
// FILE.journal.<seq>, opens a new one, and writes the snapshot in the background;
// once it is on disk the rotated journals are removed. The caller holds saveMu.
func (e *Emulator) rotate(snap *snapshot) error {
	_ = e.journal.Close()
	e.journal = nil
	rotated := e.journalPath() + "." + strconv.FormatUint(snap.seq, 10)
	if err := os.Rename(e.journalPath(), rotated); err != nil {
		return fmt.Errorf("emulator: rotating the journal: %w", err)
	}
	if err := e.openJournal(0); err != nil {
		return err
	}
	e.compactRunning = true
	go func() {
		err := e.writeSnapshot(snap)
		if err == nil {
			err = e.removeRotated(snap.seq)
		}
		e.saveMu.Lock()
		e.compactRunning = false
		e.compactDone.Broadcast()
		e.saveMu.Unlock()
		// On failure the rotated journals stay and still hold every change: load
		// replays them, and the next compaction removes them.
		e.countStats(func(s *PersistStats) {
			if err != nil {
				s.CompactionErrors++
			} else {
				s.Compactions++
			}
		})
	}()
	return nil
}

// removeRotated removes the rotated journals whose changes a snapshot up to seq holds.
func (e *Emulator) removeRotated(seq uint64) error {
	rotated, err := e.rotatedJournals()
	if err != nil {
		return err
	}
	for _, j := range rotated {
		if j.seq <= seq {
			if err := os.Remove(j.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

type rotatedJournal struct {
	path string
	seq  uint64
}

// rotatedJournals lists FILE.journal.N, in order of N.
func (e *Emulator) rotatedJournals() ([]rotatedJournal, error) {
	dir, base := filepath.Dir(e.statePath), filepath.Base(e.journalPath())+"."
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("emulator: listing %s: %w", dir, err)
	}
	var out []rotatedJournal
	for _, de := range entries {
		rest, ok := strings.CutPrefix(de.Name(), base)
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
			out = append(out, rotatedJournal{path: filepath.Join(dir, de.Name()), seq: n})
		}
	}
	slices.SortFunc(out, func(a, b rotatedJournal) int { return cmpUint(a.seq, b.seq) })
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Close waits for a compaction under way, then saves the whole state (see Save) and
// leaves no journal: the state file at rest is the whole state.
func (e *Emulator) Close() error {
	if e.statePath == "" {
		return nil
	}
	e.mu.Lock()
	e.journaling = false // a change after Close stays in memory
	e.mu.Unlock()
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	return e.saveLocked(false)
}
