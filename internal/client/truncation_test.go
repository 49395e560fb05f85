package client_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// survivors lists the IDs of the users that still exist, for a listing that must
// yield each of them exactly once (the deleted ones may or may not have been seen).
func checkListedOnce(t *testing.T, e *emulator.Emulator, got []string) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for id, n := range seen {
		require.Equal(t, 1, n, "%s yielded %d times", id, n)
	}
	for _, u := range e.Users() {
		require.Contains(t, seen, u.ID, "surviving user %s was not listed", u.Email.Value())
	}
}

func listUserIDs(t *testing.T, c *client.Client) []string {
	t.Helper()
	var got []string
	for u, err := range c.ListUsers(context.Background(), client.ListOptions{Order: "asc"}) {
		require.NoError(t, err)
		got = append(got, u.ID)
	}
	return got
}

// TestPagedListingSurvivesDeletedCursors: the concurrent writer deletes the last user
// of a page right after serving it, twice. On the platform the next page is then
// empty; the client proves whether that was the end and resumes, so every surviving
// user is listed once. The exact calls: 250 users, the first page's cursor deleted,
// then the cursor of the page read again.
func TestPagedListingSurvivesDeletedCursors(t *testing.T) {
	e, srv := newEmulator(t, emulator.Faults{})
	seed(t, e, 250, 0)
	e.SetFaults(emulator.Faults{DeleteEvery: 1, DeleteMax: 2})
	e.ResetCounts()
	c := newClient(t, srv)

	got := listUserIDs(t, c)
	require.Len(t, e.WriterDeletes(), 2)
	require.Len(t, e.Users(), 248)
	checkListedOnce(t, e, got)
	// Pages: u0..u99 (u99 deleted); empty; the first page again, now ending at u100
	// (deleted); empty; the first page again, ending at u101; u102..u201; the short
	// u202..u249. Each empty page costs a fetch of its cursor, which shows it is gone.
	assert.Equal(t, int64(7), e.Counts()["user.list"])
	assert.Equal(t, int64(2), e.Counts()["user.fetch"])
}

// TestStreamedListingSurvivesDeletedCursors: the same inside a JSONL stream, which
// the platform (and the emulator) reads in pages: a deleted page end ends the stream.
// The client checks the last item streamed with a fetch (not a poll) and, when it is
// gone, streams again from the item before it.
func TestStreamedListingSurvivesDeletedCursors(t *testing.T) {
	e, srv := newEmulator(t, emulator.Faults{})
	seed(t, e, 250, 0)
	e.SetFaults(emulator.Faults{DeleteEvery: 1, DeleteMax: 2})
	e.ResetCounts()
	c := newClient(t, srv, func(o *client.Options) { o.JSONL = true })

	got := listUserIDs(t, c)
	require.Len(t, e.WriterDeletes(), 2)
	checkListedOnce(t, e, got)
	// Streams: u0..u99 (u99 deleted, the stream ends); from u98: u100..u199 (u199
	// deleted); from u198: u200..u249. Fetches: u99 (gone), u98, u199 (gone), u198,
	// and u249, which shows the last stream was whole.
	assert.Equal(t, int64(3), e.Counts()["user.list"])
	assert.Equal(t, int64(5), e.Counts()["user.fetch"])
}

// TestTokenListSurvivesADeletedCursor: token lists cannot be checked with a fetch, so
// the page before the empty one is read again.
func TestTokenListSurvivesADeletedCursor(t *testing.T) {
	e, srv := newEmulator(t, emulator.Faults{})
	ids := seed(t, e, 1, 250)
	e.SetFaults(emulator.Faults{DeleteRate: 1, DeleteMax: 1})
	e.ResetCounts()
	c := newClient(t, srv)

	seen := map[string]int{}
	for tok, err := range c.ListTokens(context.Background(), ids[0], client.ListOptions{Order: "asc"}) {
		require.NoError(t, err)
		seen[tok.ID]++
	}
	require.Len(t, e.WriterDeletes(), 1)
	live := e.Tokens(ids[0])
	require.Len(t, live, 249)
	for _, tok := range live {
		assert.Equal(t, 1, seen[tok.ID], tok.Name.Value())
	}
	// t0..t99 (t99 deleted); empty; the first page again, to t100; t101..t200;
	// t201..t249.
	assert.Equal(t, int64(5), e.Counts()["token.list"])
}

// TestReadActualUnderAConcurrentWriter: random deletes of page ends, on user and token
// lists, at a small page size so that every list crosses pages: whatever the
// writer deleted, each surviving user and token is read exactly once.
func TestReadActualUnderAConcurrentWriter(t *testing.T) {
	for _, jsonl := range []bool{false, true} {
		for s := range 5 {
			t.Run(fmt.Sprintf("jsonl=%v/seed=%d", jsonl, s), func(t *testing.T) {
				e, srv := newEmulatorWith(t, emulator.Options{StreamPageSize: 7})
				seed(t, e, 60, 9)
				e.SetFaults(emulator.Faults{Seed: int64(s), DeleteRate: 0.3, Rate5xx: 0.05})
				c := newClient(t, srv, func(o *client.Options) { o.JSONL = jsonl; o.PageSize = 4 })
				a, err := c.ReadActual(context.Background(), func(state.User) bool { return true })
				require.NoError(t, err)
				require.NotEmpty(t, e.WriterDeletes())
				var got []string
				for _, u := range a.Users {
					got = append(got, u.ID)
				}
				checkListedOnce(t, e, got)
				for _, u := range e.Users() {
					seen := map[string]int{}
					for _, tok := range a.Tokens[u.ID] {
						seen[tok.ID]++
					}
					for _, tok := range e.Tokens(u.ID) {
						assert.Equal(t, 1, seen[tok.ID], "user %s token %s", u.Email.Value(), tok.Name.Value())
					}
				}
			})
		}
	}
}
