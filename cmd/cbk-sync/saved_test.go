package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// savedHarness is an emulator over HTTP and a way to run cbk-sync against it.
type savedHarness struct {
	t   *testing.T
	e   *emulator.Emulator
	url string
	dir string
}

const savedToken = "sk-saved-plan-test-token"

func newSavedHarness(t *testing.T) *savedHarness {
	e, err := emulator.New(emulator.Options{Token: savedToken})
	require.NoError(t, err)
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	t.Cleanup(func() { _ = stop(context.Background()) })
	return &savedHarness{t: t, e: e, url: url, dir: t.TempDir()}
}

func (h *savedHarness) put(email, owner string) state.User {
	u := state.User{Email: state.Some(email), Name: state.Some("Old")}
	if owner != "" {
		u.Meta = state.Some(state.Meta{state.OwnerKey: owner})
	}
	u, err := h.e.PutUser(u)
	require.NoError(h.t, err)
	return u
}

func (h *savedHarness) byEmail(email string) state.User {
	for _, u := range h.e.Users() {
		if u.Email.Value() == email {
			return u
		}
	}
	h.t.Fatalf("no user %s", email)
	return state.User{}
}

func (h *savedHarness) file(name, content string) string {
	p := filepath.Join(h.dir, name)
	require.NoError(h.t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func (h *savedHarness) run(args ...string) (int, string) {
	streams, out, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": savedToken})
	if args[0] != "show" { // show calls no API
		args = append(args, "--api-url", h.url)
	}
	code := run(context.Background(), args, streams)
	return code, out.String() + errOut.String()
}

// writes is the number of write calls the emulator has served since the last reset.
func (h *savedHarness) writes() int64 {
	n := int64(0)
	for op, c := range h.e.Counts() {
		if !strings.HasSuffix(op, ".list") && !strings.HasSuffix(op, ".fetch") {
			n += c
		}
	}
	return n
}

// editSaved rewrites the plan section of a saved plan file: the same edits an
// attacker or a careless reviewer would make by hand.
func editSaved(t *testing.T, path string, edit func(p map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var f map[string]any
	require.NoError(t, json.Unmarshal(b, &f))
	edit(f["plan"].(map[string]any))
	b, err = json.MarshalIndent(f, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// TestForgedSavedPlanIsRefused: a saved plan edited after `plan --out` wrote it — a
// delete pointed at an unmanaged user, an update added for a foreign user, an edited
// user_body, the safe flag set on an unsafe plan — is refused with exit 4 and not one
// write. (Before plans were computed again, the first three were applied, exit 0.)
func TestForgedSavedPlanIsRefused(t *testing.T) {
	const config = "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: Planned\n"
	for name, tc := range map[string]struct {
		unsafe bool
		edit   func(h *savedHarness, p map[string]any)
	}{
		"a delete of an unmanaged user added": {edit: func(h *savedHarness, p map[string]any) {
			z := h.byEmail("z@acme.test")
			p["users"] = append(p["users"].([]any), map[string]any{"identity": map[string]any{"kind": "email", "value": "z@acme.test"}, "email": "z@acme.test", "user_id": z.ID,
				"changes": []any{map[string]any{"action": "user_delete", "email": "z@acme.test", "user_id": z.ID, "reason": "owned and not declared (prune.users is true)"}}})
		}},
		"an update of a foreign user added": {edit: func(h *savedHarness, p map[string]any) {
			f := h.byEmail("f@acme.test")
			p["users"] = append(p["users"].([]any), map[string]any{"identity": map[string]any{"kind": "email", "value": "f@acme.test"}, "email": "f@acme.test", "user_id": f.ID,
				"changes": []any{map[string]any{"action": "user_update", "email": "f@acme.test", "user_id": f.ID, "reason": "drifted from the configuration",
					"fields": []any{map[string]any{"field": "name", "before": "Old", "after": "Pwned"}}, "user_body": map[string]any{"name": "Pwned"}}}})
		}},
		"the user_body edited": {edit: func(_ *savedHarness, p map[string]any) {
			c := p["users"].([]any)[0].(map[string]any)["changes"].([]any)[0].(map[string]any)
			c["user_body"].(map[string]any)["name"] = "Mallory"
		}},
		"the safe flag set on an unsafe plan": {unsafe: true, edit: func(_ *savedHarness, p map[string]any) {
			p["safety"].(map[string]any)["safe"] = true
			delete(p["safety"].(map[string]any), "reasons")
		}},
	} {
		t.Run(name, func(t *testing.T) {
			h := newSavedHarness(t)
			cfg := config
			if tc.unsafe {
				// 12 owned users, 4 of them undeclared with prune: over the 25% cap.
				cfg = "version: 1\nowner: acme\nprune: { users: true }\nusers:\n"
				for i := range 12 {
					h.put(fmt.Sprintf("u%02d@acme.test", i), "acme")
					if i >= 4 {
						cfg += fmt.Sprintf("  - email: u%02d@acme.test\n", i)
					}
				}
			} else {
				h.put("a@acme.test", "acme")
				h.put("z@acme.test", "")      // unmanaged
				h.put("f@acme.test", "other") // foreign
			}
			path := h.file("config.yaml", cfg)
			planFile := filepath.Join(h.dir, "plan.json")
			code, out := h.run("plan", "-f", path, "--out", planFile)
			require.Equal(t, map[bool]int{false: 0, true: exitUnsafe}[tc.unsafe], code, out)
			editSaved(t, planFile, func(p map[string]any) { tc.edit(h, p) })
			h.e.ResetCounts()
			code, out = h.run("apply", planFile)
			assert.Equal(t, exitUnsafe, code, out)
			assert.Contains(t, out, "nothing was applied")
			assert.Zero(t, h.writes(), "writes: %v", h.e.Counts())
			for _, u := range h.e.Users() {
				assert.Equal(t, "Old", u.Name.Value(), u.Email.Value())
			}
			// show refuses it as well, and calls nothing.
			code, out = h.run("show", planFile)
			assert.Equal(t, exitUnsafe, code, out)
		})
	}
}

// TestSavedPlanAppliesAndShows: an unedited saved plan is shown by `show` in every
// format with no API call, and `apply` runs exactly it.
func TestSavedPlanAppliesAndShows(t *testing.T) {
	h := newSavedHarness(t)
	h.put("a@acme.test", "acme")
	path := h.file("config.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: Planned\n    tokens:\n      - name: ci\n")
	planFile := filepath.Join(h.dir, "plan.json")
	code, out := h.run("plan", "-f", path, "--out", planFile)
	require.Equal(t, 0, code, out)
	h.e.ResetCounts()
	for _, format := range []string{"text", "json", "markdown"} {
		code, out = h.run("show", planFile, "-o", format)
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "Planned", format)
	}
	code, out = h.run("show", planFile)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "~ user a@acme.test")
	assert.Contains(t, out, "Plan: 0 users to create, 1 to update")
	assert.Equal(t, 0, code)
	for op, n := range h.e.Counts() {
		assert.Zero(t, n, "show called %s", op)
	}
	code, out = h.run("apply", planFile, "--secrets-out", filepath.Join(h.dir, "secrets.jsonl"))
	require.Equal(t, 0, code, out)
	assert.Equal(t, "Planned", h.e.Users()[0].Name.Value())
	// Applied: the same file is now stale.
	code, out = h.run("apply", planFile, "--secrets-out", filepath.Join(h.dir, "secrets.jsonl"))
	assert.Equal(t, exitUnsafe, code, out)
	assert.Contains(t, out, "remote state changed since")
}

// TestApplySavedPlanReadsOnlyWhatItChanges: apply FILE of a plan that changes 1% of
// 5,000 users (25 renamed, 25 with a new token) fetches those 50 users (a fetch is
// not a poll) and reads the token lists of the 25 whose tokens change: 25 polls, where
// reading the account again costs 50 user pages and 5,000 token lists. A stale plan
// is still refused.
func TestApplySavedPlanReadsOnlyWhatItChanges(t *testing.T) {
	const n = 5000
	h := newSavedHarness(t)
	// About which objects apply reads, not the poll limit: a 5,000-user plan would
	// wait out the emulator's default limit (1,000 polls a minute) five times.
	h.e.SetFaults(emulator.Faults{PollLimit: -1})
	var cfg strings.Builder
	cfg.WriteString("version: 1\nowner: acme\nusers:\n")
	ids := map[int]string{}
	for i := range n {
		u := h.put(fmt.Sprintf("u%04d@acme.test", i), "acme")
		ids[i] = u.ID
		_, err := h.e.PutToken(u.ID, state.Token{Name: state.Some("ci"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		name := "Old"
		if i%200 == 0 {
			name = "Renamed"
		}
		fmt.Fprintf(&cfg, "  - email: u%04d@acme.test\n    name: %s\n    tokens:\n      - name: ci\n", i, name)
		if i%200 == 100 {
			cfg.WriteString("      - name: deploy\n")
		}
	}
	path := h.file("config.yaml", cfg.String())
	planFile := filepath.Join(h.dir, "plan.json")
	code, out := h.run("plan", "-f", path, "--out", planFile)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "Plan: 0 users to create, 25 to update, 0 to delete, 0 to adopt; 25 tokens to create")

	stale := filepath.Join(h.dir, "stale.json")
	b, err := os.ReadFile(planFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stale, b, 0o644))

	h.e.ResetCounts()
	code, out = h.run("apply", planFile, "--secrets-out", filepath.Join(h.dir, "secrets.jsonl"))
	require.Equal(t, 0, code, out)
	c := h.e.Counts()
	// 26 polls, where the 50 changed users cost 50 token lists to plan (and the whole
	// account 51 pages and 5,000 token lists): no user page but the lookup of the
	// run's lock, which also finds the API's path family.
	assert.Equal(t, int64(1), c["user.list"], "only the lock's lookup")
	assert.Equal(t, int64(25), c["token.list"], "the token lists of the users whose tokens change")
	assert.Equal(t, int64(50), c["user.fetch"], "the changed users, by fetch")
	assert.Equal(t, int64(25), c["user.update"])
	assert.Equal(t, int64(25), c["token.create"])

	// The first plan's copy depends on users that have changed since: refused, no write.
	h.e.ResetCounts()
	code, out = h.run("apply", stale, "--secrets-out", filepath.Join(h.dir, "secrets.jsonl"))
	assert.Equal(t, exitUnsafe, code, out)
	assert.Contains(t, out, "remote state changed since")
	assert.Equal(t, int64(2), h.writes(), "only the run's lock, created and deleted: %v", h.e.Counts())
	assert.Equal(t, int64(1), h.e.Counts()["user.delete"])
	assert.LessOrEqual(t, h.e.Counts()["token.list"], int64(25))
}

// TestSavedPlanOfAForgedDesiredStateIsRefused: a plan computed with the planner itself
// (so that it follows from what is saved with it) from a desired state no configuration
// can give — a lease user of another owner claiming 2099, a user carrying another
// owner's marker, an invalid owner — is refused by apply and show before anything is
// read or written (exit 4). (Before, apply created the first two.)
func TestSavedPlanOfAForgedDesiredStateIsRefused(t *testing.T) {
	for name, d := range map[string]state.Desired{
		"a lease user of another owner": {Owner: "acme", Users: []state.DesiredUser{{
			Email: state.Some(state.LeaseEmail("other-team")), Name: state.Some("cbk-sync lock"),
			Meta: state.Some(state.Meta{"cbkSyncLockHolder": "mallory/1/x", "cbkSyncLockExpires": "2099-01-01T00:00:00Z"})}}},
		"a user marked for another owner": {Owner: "acme", Users: []state.DesiredUser{{
			Email: state.Some("m@acme.test"), Meta: state.Some(state.Meta{state.OwnerKey: "other-team"}),
			ManageTokens: true, Tokens: []state.DesiredToken{{Name: "ci"}}}}},
		"an invalid owner": {Owner: "Other Team", Users: []state.DesiredUser{{Email: state.Some("m@acme.test")}}},
	} {
		t.Run(name, func(t *testing.T) {
			h := newSavedHarness(t)
			h.put("a@acme.test", "acme")
			o := plan.DefaultOptions(time.Now())
			p, err := plan.Compute(d, state.Actual{Tokens: map[string][]state.Token{}}, o)
			require.NoError(t, err)
			require.False(t, p.Empty(), "the forged plan has changes")
			var buf bytes.Buffer
			require.NoError(t, plan.WriteSaved(&buf, plan.NewSaved(d, state.Actual{Tokens: map[string][]state.Token{}}, o, &p)))
			planFile := h.file("forged.json", buf.String())
			h.e.ResetCounts()
			code, out := h.run("apply", planFile, "--secrets-out", filepath.Join(h.dir, "secrets.jsonl"))
			assert.Equal(t, exitUnsafe, code, out)
			assert.Contains(t, out, "breaks the rules of a configuration")
			assert.Zero(t, h.writes(), "writes: %v", h.e.Counts())
			assert.Zero(t, h.e.Counts()["user.list"], "refused before anything is read")
			code, out = h.run("show", planFile)
			assert.Equal(t, exitUnsafe, code, out)
		})
	}
}
