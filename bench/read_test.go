package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The bench reads what `cbk-sync plan` reads, through the plan's own choice
// (plan.ToRead): the declared alias of an existing user is looked up, so an alias
// missing on the platform is planned back. (The bench copied the token-list filter and
// left the alias fetches out: its plans missed that drift, and made one call fewer per
// declared alias than cbk-sync.)
func TestReadAndPlanReadsWhatPlanReads(t *testing.T) {
	emu, err := emulator.New(emulator.Options{Token: apiToken})
	require.NoError(t, err)
	url, stop, err := emulator.Listen("127.0.0.1:0", emu)
	require.NoError(t, err)
	t.Cleanup(func() { _ = stop(context.Background()) })
	u, err := emu.PutUser(state.User{Email: state.Some("a@bench.test"), Name: state.Some("A"),
		Meta: state.Some(state.Meta{state.OwnerKey: benchOwner})})
	require.NoError(t, err)
	require.Equal(t, "", emu.Alias(u.ID), "the declared alias is missing on the platform")

	d, err := config.LoadBytes("bench.yaml", []byte("version: 1\nowner: "+benchOwner+"\nusers:\n  - email: a@bench.test\n    name: A\n    alias: bench-a\n"), nil)
	require.NoError(t, err)
	api, err := newBenchClient(url, 2, slog.New(slog.DiscardHandler), pollRun{}, false)
	require.NoError(t, err)
	emu.ResetCounts()
	p, err := readAndPlan(context.Background(), api.ReadOnly(), d, plan.DefaultOptions(time.Now()))
	require.NoError(t, err)
	assert.Equal(t, plan.Summary{UserUpdate: 1}, p.Summary(), "the missing alias is restored")
	assert.Equal(t, int64(1), emu.Counts()["user.fetch"]-1, "the stream's last-user check, and one fetch of @bench-a")
}
