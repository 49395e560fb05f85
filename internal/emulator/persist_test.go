package emulator

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStateRoundTripsThroughTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path})
	a := h.createUser(`{"email":"a@acme.test","name":"A","description":"d","image":"https://i.test/a.png","alias":"al",
		"meta":{"team":"sales","deep":{"n":1}},"limits":{"tokens":3,"database":{"files":2}}}`)
	h.createUser(`{"email":"b@acme.test"}`)
	gone := h.createUser(`{"email":"gone@acme.test"}`)
	var secrets []string
	for _, name := range []string{"ci", "cd"} {
		secrets = append(secrets, h.createToken(a, `{"name":"`+name+`","meta":{"k":"v"},"config":{"x":1}}`)["token"].(string))
	}
	h.ok("POST", "/v1/partner/user/"+gone+"/delete", `{}`)
	_, err := os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "without SaveOnWrite nothing is written before Save")
	require.NoError(t, h.e.Close())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, s := range secrets {
		assert.NotContains(t, string(raw), s[3:], "no secret in the state file")
	}

	h2 := newHarness(t, Options{StatePath: path})
	assert.Equal(t, h.e.Users(), h2.e.Users())
	assert.Equal(t, h.e.Tokens(a), h2.e.Tokens(a))
	for _, p := range []string{"/v1/partner/user/list", "/v1/partner/user/" + a + "/fetch", "/v1/partner/user/" + a + "/token/list", "/v1/partner/user/list?cursor=" + gone} {
		assert.Equal(t, string(h.do("GET", p, "").body), string(h2.do("GET", p, "").body), p)
	}
	assert.Empty(t, ids(t, h2.ok("GET", "/v1/partner/user/list?cursor="+gone, "")), "a deleted cursor still selects nothing after a restart")
	h2.fail(400, "BAD_REQUEST", "GET", "/v1/partner/user/list?cursor=never-existed", "")
	h2.fail(409, "CONFLICT", "POST", "/v1/partner/user/create", `{"email":"A@acme.test"}`)
	assert.Equal(t, "al", h2.e.Alias(a), "the write-only alias survives a restart")
	assert.Equal(t, a, h2.ok("GET", "/v1/partner/user/@al/fetch", "")["id"], "and its index")
	h2.fail(409, "CONFLICT", "POST", "/v1/partner/user/create", `{"alias":"al"}`)
}

func TestSaveOnWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	h.createUser(`{"email":"a@acme.test"}`)
	assert.Len(t, reopen(t, path).Users(), 1, "a restart finds it: it is in the journal")

	// A lost answer is still saved: the change was made.
	h.e.SetFaults(Faults{RateLost: 1})
	_, err := h.try("POST", "/v1/partner/user/create", `{"email":"b@acme.test"}`)
	require.Error(t, err)
	assert.Len(t, reopen(t, path).Users(), 2)
}

func TestConcurrentWritesAllReachTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			r, err := h.try("POST", "/v1/partner/user/create", `{"email":"u`+string(rune('a'+i))+`@acme.test"}`)
			if err == nil && r.status != 200 {
				err = errors.New(string(r.body))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Len(t, reopen(t, path).Users(), 20, "the journal holds every user")
	assert.Len(t, h.e.Users(), 20)
}

// TestCrashDuringSaveKeepsTheOldFile simulates a crash half-way through writing: the
// state file must still be the previous, complete one.
func TestCrashDuringSaveKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	h := newHarness(t, Options{StatePath: path})
	h.createUser(`{"email":"a@acme.test"}`)
	require.NoError(t, h.e.Save())
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	h.createUser(`{"email":"b@acme.test"}`)
	crash := errors.New("simulated crash")
	h.e.writeState = func(w io.Writer, data []byte) error {
		_, _ = w.Write(data[:len(data)/2])
		return crash
	}
	err = h.e.Save()
	require.ErrorIs(t, err, crash)
	assert.Contains(t, err.Error(), path)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "the old file is intact")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "the temporary file is removed")

	// A real crash would leave the half-written temporary file behind: it is ignored.
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".state.json.tmp-123"), after[:len(after)/2], 0o600))
	h2 := newHarness(t, Options{StatePath: path})
	require.Len(t, h2.e.Users(), 1)
	assert.Equal(t, "a@acme.test", h2.e.Users()[0].Email.Value())
}

func TestCorruptStateFileIsAClearError(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage.json":  "{not json",
		"version.json":  `{"version":9,"users":[]}`,
		"dup-id.json":   `{"version":1,"users":[{"id":"u1","tokens":[]},{"id":"u1","tokens":[]}]}`,
		"dup-mail.json": `{"version":1,"users":[{"id":"u1","email":"a@b.test"},{"id":"u2","email":"A@b.test"}]}`,
		"no-id.json":    `{"version":1,"users":[{"email":"a@b.test"}]}`,
	} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		_, err := New(Options{Token: testToken, StatePath: path})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), path)
		assert.True(t, strings.Contains(err.Error(), "corrupt"), err.Error())
	}
}

func TestMissingStateFileStartsEmptyAndMemoryOnlyNeverWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.json")
	e, err := New(Options{Token: testToken, StatePath: path})
	require.NoError(t, err)
	assert.Empty(t, e.Users())
	require.NoError(t, e.Close())
	assert.Empty(t, readStateFile(t, path).Users)

	mem, err := New(Options{Token: testToken})
	require.NoError(t, err)
	require.NoError(t, mem.Save())

	_, err = New(Options{})
	assert.Error(t, err, "a token is required")
}

func readStateFile(t *testing.T, path string) stateFile {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var sf stateFile
	require.NoError(t, json.Unmarshal(b, &sf))
	return sf
}
