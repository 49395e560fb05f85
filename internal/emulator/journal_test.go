package emulator

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// reopen loads the state file and its journals as a restart would.
func reopen(t *testing.T, path string) *Emulator {
	t.Helper()
	e, err := New(Options{Token: testToken, StatePath: path})
	require.NoError(t, err)
	return e
}

// sameState fails unless a and b hold the same users, tokens and aliases.
func sameState(t *testing.T, a, b *Emulator) {
	t.Helper()
	require.Equal(t, a.Users(), b.Users())
	for _, u := range a.Users() {
		require.Equal(t, a.Tokens(u.ID), b.Tokens(u.ID), "tokens of %s", u.ID)
		require.Equal(t, a.Alias(u.ID), b.Alias(u.ID), "alias of %s", u.ID)
	}
}

// churned numbers the users churn creates, so that every email and alias is new.
var churned atomic.Int64

// churn makes n seeded changes of every kind through the API.
func churn(h *harness, rng *rand.Rand, n int) {
	var users []string
	for range n {
		i := churned.Add(1)
		switch k := rng.IntN(10); {
		case k < 3 || len(users) < 2:
			users = append(users, h.createUser(fmt.Sprintf(`{"email":"u%d@acme.test","alias":"a%d","meta":{"i":%d}}`, i, i, i)))
		case k < 5:
			h.ok("POST", "/v1/partner/user/"+users[rng.IntN(len(users))]+"/update", fmt.Sprintf(`{"name":"n%d","meta":{"$update":{"k":%d}}}`, i, i))
		case k < 7:
			h.createToken(users[rng.IntN(len(users))], fmt.Sprintf(`{"name":"t%d"}`, i))
		case k < 8:
			u := users[rng.IntN(len(users))]
			if ts := h.e.Tokens(u); len(ts) > 0 {
				h.ok("POST", "/v1/partner/user/"+u+"/token/"+ts[0].ID+"/update", `{"description":"d"}`)
			}
		case k < 9:
			u := users[rng.IntN(len(users))]
			if ts := h.e.Tokens(u); len(ts) > 0 {
				h.ok("POST", "/v1/partner/user/"+u+"/token/"+ts[len(ts)-1].ID+"/delete", `{}`)
			}
		default:
			j := rng.IntN(len(users))
			h.ok("POST", "/v1/partner/user/"+users[j]+"/delete", `{}`)
			users = slices.Delete(users, j, j+1)
		}
	}
}

// Every answered change is in the journal: a restart without Close (a crash) replays
// it over the snapshot, and the state file is rewritten only by compaction and Close.
func TestJournalReplaysEveryAnsweredChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	churn(h, rand.New(rand.NewPCG(1, 2)), 300)
	_, err := os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "no snapshot yet: the changes are in the journal")
	st := h.e.PersistStats()
	assert.Positive(t, st.Appends)
	assert.Positive(t, st.JournalBytes)
	sameState(t, h.e, reopen(t, path)) // the crash: no Close

	require.NoError(t, h.e.Close())
	_, err = os.Stat(path + journalSuffix)
	assert.ErrorIs(t, err, os.ErrNotExist, "Close leaves the whole state in the file, and no journal")
	sameState(t, h.e, reopen(t, path))
}

// A crash in the middle of an append leaves a journal whose last line is cut short
// (or, on some file systems, padded with zeros): that change was never answered, and
// it is dropped; the journal is cut back to its last whole change, so that what is
// appended after the restart is read back too. Seeded cuts at random places.
func TestJournalTornAtTheTailIsRecovered(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 12 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
			churn(h, rng, 20)
			answered := reopen(t, path).Users()

			// The group being appended when the crash came: a create and a delete,
			// cut at a random place before its end.
			seq := h.e.version
			group := fmt.Sprintf(`{"seq":%d,"op":"user","user":{"id":"torn","createdAt":1,"updatedAt":1,"email":"torn@acme.test"}}`+"\n"+
				`{"seq":%d,"op":"delete_user","id":"%s"}`+"\n", seq+1, seq+2, answered[0].ID)
			cut := []byte(group[:1+rng.IntN(len(group)-2)])
			if i%3 == 2 { // the end of the cut never reached the disk: zeros
				half := len(cut) / 2
				cut = append(cut[:half], bytes.Repeat([]byte{0}, len(cut)-half)...)
			}
			f, err := os.OpenFile(path+journalSuffix, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.Write(cut)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			want := answered
			if bytes.IndexByte(cut, '\n') >= 0 { // the create's line is whole: it made it
				want = reopenUsersWith(t, answered, "torn")
			}
			after := reopen(t, path).Users()
			assert.Equal(t, ids2(want), ids2(after), "cut %q", cut)

			// Appending goes on after the last whole change.
			e2, err := New(Options{Token: testToken, StatePath: path, SaveOnWrite: true})
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, serve(e2, "POST", "/v1/partner/user/create", `{"email":"after@acme.test"}`))
			assert.Len(t, reopen(t, path).Users(), len(after)+1, "the change after the restart is read back: the torn tail was cut off")
		})
	}
}

// reopenUsersWith is users and the torn create's user, in list order (created at 1).
func reopenUsersWith(t *testing.T, users []state.User, id string) []state.User {
	t.Helper()
	return append([]state.User{{ID: id}}, users...)
}

func ids2(us []state.User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.ID)
	}
	return out
}

// A bad line followed by good ones is not a torn tail but corruption: an error naming
// the journal and the line.
func TestJournalCorruptInTheMiddleIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	h.createUser(`{"email":"a@acme.test"}`)
	h.createUser(`{"email":"b@acme.test"}`)
	b, err := os.ReadFile(path + journalSuffix)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(b), "\n")
	require.GreaterOrEqual(t, len(lines), 2)
	lines[0] = `{"seq":1,"op":"user","user":` + "\n"
	require.NoError(t, os.WriteFile(path+journalSuffix, []byte(strings.Join(lines, "")), 0o600))
	_, err = New(Options{Token: testToken, StatePath: path})
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+journalSuffix)
	assert.Contains(t, err.Error(), "corrupt at line 1")
}

// Compaction rotates the journal and writes a snapshot in the background; a crash at
// any point of it (the snapshot failing half-way here) loses no answered change.
func TestCompactionKeepsEveryChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	h.e.saveMu.Lock()
	h.e.compactMin = 1 // compact as soon as the journal outgrows the snapshot
	h.e.saveMu.Unlock()
	rng := rand.New(rand.NewPCG(3, 4))
	churn(h, rng, 200)
	waitCompactions(h.e)
	st := h.e.PersistStats()
	assert.Positive(t, st.Compactions, "the journal was compacted")
	assert.Less(t, st.JournalBytes, st.SnapshotSize*2+4096, "and stays within the snapshot's size")
	sameState(t, h.e, reopen(t, path))

	// The snapshot fails half-way: the rotated journals stay, and still hold it all.
	h.e.saveMu.Lock()
	h.e.writeState = func(w io.Writer, data []byte) error {
		_, _ = w.Write(data[:len(data)/2])
		return io.ErrShortWrite
	}
	h.e.saveMu.Unlock()
	churn(h, rng, 100)
	waitCompactions(h.e)
	assert.Positive(t, h.e.PersistStats().CompactionErrors)
	rotated, err := h.e.rotatedJournals()
	require.NoError(t, err)
	assert.NotEmpty(t, rotated, "the journals of the failed compactions stay")
	sameState(t, h.e, reopen(t, path))

	h.e.saveMu.Lock()
	h.e.writeState = writeAll
	h.e.saveMu.Unlock()
	churn(h, rng, 100)
	waitCompactions(h.e)
	sameState(t, h.e, reopen(t, path))
	require.NoError(t, h.e.Close())
	rotated, err = h.e.rotatedJournals()
	require.NoError(t, err)
	assert.Empty(t, rotated)
	sameState(t, h.e, reopen(t, path))
}

// waitCompactions waits for a compaction under way to end (on its condition, not a
// sleep).
func waitCompactions(e *Emulator) {
	e.saveMu.Lock()
	for e.compactRunning {
		e.compactDone.Wait()
	}
	e.saveMu.Unlock()
}

// Saves never hold the lock that reads take: while a compaction's snapshot is held
// half-way through its write, reads are served and writes are appended, answered and
// durable. (Before the journal, a save encoded the whole state under that lock, and
// every write waited for the whole file to be written.)
func TestSavesNeverHoldTheReadLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	a := h.createUser(`{"email":"a@acme.test"}`)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.e.saveMu.Lock()
	h.e.compactMin = 1
	h.e.writeState = func(w io.Writer, data []byte) error {
		once.Do(func() { close(held); <-release })
		return writeAll(w, data)
	}
	h.e.saveMu.Unlock()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	for i := 0; ; i++ {
		h.createUser(fmt.Sprintf(`{"email":"x%d@acme.test"}`, i))
		h.e.saveMu.Lock()
		running := h.e.compactRunning
		h.e.saveMu.Unlock()
		if running {
			break
		}
	}
	<-held // the snapshot is being written, and waits
	done := make(chan error, 1)
	go func() {
		for i := range 20 {
			if c := serve(h.e, "GET", "/v1/partner/user/"+a+"/fetch", ""); c != http.StatusOK {
				done <- fmt.Errorf("fetch: %d", c)
				return
			}
			if c := serve(h.e, "GET", "/v1/partner/user/list", ""); c != http.StatusOK {
				done <- fmt.Errorf("list: %d", c)
				return
			}
			if c := serve(h.e, "POST", "/v1/partner/user/"+a+"/update", fmt.Sprintf(`{"name":"n%d"}`, i)); c != http.StatusOK {
				done <- fmt.Errorf("update: %d", c)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("reads and writes waited for the snapshot")
	}
	assert.Equal(t, "n19", reopen(t, path).Users()[0].Name.Value(), "the writes are durable before the snapshot is")
	close(release)
	waitCompactions(h.e)
}

// Tombstones are bounded: past MaxTombstones the oldest delete is forgotten, and its
// cursor is refused as unknown; the newer ones still select nothing.
func TestTombstonesAreBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true, MaxTombstones: 3})
	var ids []string
	for i := range 5 {
		ids = append(ids, h.createUser(fmt.Sprintf(`{"email":"g%d@acme.test"}`, i)))
	}
	h.createUser(`{"email":"live@acme.test"}`)
	for _, id := range ids {
		h.ok("POST", "/v1/partner/user/"+id+"/delete", `{}`)
	}
	check := func(h *harness) {
		for _, id := range ids[:2] {
			h.fail(400, "BAD_REQUEST", "GET", "/v1/partner/user/list?cursor="+id, "")
		}
		for _, id := range ids[2:] {
			assert.Empty(t, h.ok("GET", "/v1/partner/user/list?cursor="+id, "")["items"])
		}
		h.e.mu.Lock()
		assert.Len(t, h.e.gone, 3)
		h.e.mu.Unlock()
	}
	check(h)
	require.NoError(t, h.e.Close())
	check(newHarness(t, Options{StatePath: path, MaxTombstones: 3}))
}

// The ordered index pages like a sorted slice would, in both orders, from any cursor,
// through seeded inserts and deletes.
func TestOrderedIndexPagesLikeASortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	o := newOrdered[string]()
	ref := map[string][]indexKey{}
	groups := []string{"", "a", "b"}
	for step := range 3000 {
		g := groups[rng.IntN(len(groups))]
		if len(ref[g]) > 0 && rng.IntN(3) == 0 {
			j := rng.IntN(len(ref[g]))
			o.remove(ref[g][j])
			ref[g] = slices.Delete(ref[g], j, j+1)
		} else {
			k := indexKey{group: g, createdAt: int64(rng.IntN(50)), id: fmt.Sprintf("id%05d", step)}
			o.put(k, k.id)
			ref[g] = append(ref[g], k)
		}
		if step%100 != 0 {
			continue
		}
		for _, g := range groups {
			keys := slices.Clone(ref[g])
			sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
			var want []string
			for _, k := range keys {
				want = append(want, k.id)
			}
			assert.Equal(t, want, o.page(g, true, nil, 0, nil), "group %q ascending", g)
			assert.Equal(t, want, o.all(g))
			rev := slices.Clone(want)
			slices.Reverse(rev)
			assert.Equal(t, rev, o.page(g, false, nil, 0, nil), "group %q descending", g)
			if len(keys) > 0 {
				i := rng.IntN(len(keys))
				take := 1 + rng.IntN(5)
				assert.Equal(t, nilIfEmpty(want[i+1:min(len(want), i+1+take)]), o.page(g, true, &keys[i], take, nil))
				assert.Equal(t, reverse(want[max(0, i-take):i]), o.page(g, false, &keys[i], take, nil))
			}
		}
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func reverse(s []string) []string {
	c := slices.Clone(s)
	slices.Reverse(c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// The demo's state file still loads as a seed and is written back in its format.
func TestDemoStateLoadsAndIsWrittenBack(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "demo", "remote-state.json"))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "state.json")
	require.NoError(t, os.WriteFile(path, src, 0o600))
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	n := len(h.e.Users())
	require.Positive(t, n)
	h.createUser(`{"email":"new@acme.test"}`)
	require.NoError(t, h.e.Close())
	sf := readStateFile(t, path)
	assert.Equal(t, stateFileVersion, sf.Version)
	assert.Len(t, sf.Users, n+1)
	sameState(t, h.e, reopen(t, path))
}

// An append that fails is answered 500 (the change was made, not saved), and the next
// write repairs the journal with a whole snapshot: both changes survive a restart.
func TestFailedAppendIsRepairedBySnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	h.createUser(`{"email":"a@acme.test"}`)
	fail := true
	h.e.saveMu.Lock()
	h.e.writeJournal = func(w io.Writer, data []byte) error {
		if fail {
			fail = false
			_, _ = w.Write(data[:len(data)/2])
			return io.ErrShortWrite
		}
		return writeAll(w, data)
	}
	h.e.saveMu.Unlock()
	h.fail(500, "INTERNAL_SERVER_ERROR", "POST", "/v1/partner/user/create", `{"email":"b@acme.test"}`)
	h.createUser(`{"email":"c@acme.test"}`)
	assert.Len(t, reopen(t, path).Users(), 3, "the half-written group is replaced by a snapshot that holds everything")
	h.createUser(`{"email":"d@acme.test"}`)
	assert.Len(t, reopen(t, path).Users(), 4, "and appending goes on")
}

// The state file loaded at New is the snapshot the journal is measured against: the
// journal is compacted once it outgrows that file, not at its first megabyte. (It was
// compacted at compactMin whatever the file's size, so a 100,000-user account wrote its
// whole 74 MB state after every megabyte of changes, a cost that grew with the
// account: writes/s at 100,000 users fell to a quarter of those at 1,000.)
func TestLoadedStateFileCountsAsTheSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	seed, err := New(Options{Token: testToken, StatePath: path})
	require.NoError(t, err)
	var ids []string
	for i := range 200 {
		u, err := seed.PutUser(stateUser(fmt.Sprintf("s%03d@acme.test", i), 1_700_000_000_000+int64(i)))
		require.NoError(t, err)
		ids = append(ids, u.ID)
	}
	require.NoError(t, seed.Close())
	fi, err := os.Stat(path)
	require.NoError(t, err)

	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	assert.Equal(t, fi.Size(), h.e.PersistStats().SnapshotSize, "the loaded file is the last snapshot")
	h.e.saveMu.Lock()
	h.e.compactMin = 1 // only the snapshot's size holds compaction back
	h.e.saveMu.Unlock()
	i := 0
	update := func() {
		h.ok("POST", "/v1/partner/user/"+ids[i%len(ids)]+"/update", fmt.Sprintf(`{"name":"n%d"}`, i))
		i++
	}
	for h.e.PersistStats().JournalBytes < fi.Size()/2 {
		update()
	}
	waitCompactions(h.e)
	assert.Zero(t, h.e.PersistStats().Compactions, "a journal half the size of the state file is not compacted")
	for h.e.PersistStats().JournalBytes < fi.Size() {
		update()
	}
	update() // the append that finds the journal past the snapshot compacts it
	waitCompactions(h.e)
	assert.Equal(t, int64(1), h.e.PersistStats().Compactions, "a journal past the state file's size is")
	sameState(t, h.e, reopen(t, path))
}
