package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestPlanReadsTheMinimum runs `plan` for 250 remote users with a config that manages
// the tokens of 100 of them: it must make exactly ceil(250/100) = 3 user-list calls
// and 100 token-list calls, and no write. After a sync, a plan must be empty.
func TestPlanReadsTheMinimum(t *testing.T) {
	const token = "sk-calls-test-token"
	e, err := emulator.New(emulator.Options{Token: token})
	require.NoError(t, err)
	var cfg strings.Builder
	cfg.WriteString("version: 1\nowner: acme\nusers:\n")
	for i := range 250 {
		u, err := e.PutUser(state.User{Email: state.Some(fmt.Sprintf("u%03d@acme.test", i)), Name: state.Some("old"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		_, err = e.PutToken(u.ID, state.Token{Name: state.Some("ci"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		fmt.Fprintf(&cfg, "  - email: u%03d@acme.test\n    name: User %d\n", i, i)
		if i%5 < 2 { // 100 users manage their tokens
			cfg.WriteString("    tokens:\n      - name: ci\n      - name: deploy\n")
		}
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg.String()), 0o644))
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	defer stop(context.Background())

	cmd := func(args ...string) (int, string) {
		streams, out, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": token})
		code := run(context.Background(), append(args, "--api-url", url), streams)
		return code, out.String() + errOut.String()
	}

	code, out := cmd("plan", "-f", path, "--detailed-exitcode", "--force-updates")
	require.Equal(t, exitPending, code, out)
	require.Contains(t, out, "Plan: 0 users to create, 250 to update, 0 to delete, 0 to adopt; 100 tokens to create")
	counts := e.Counts()
	require.Equal(t, int64(3), counts["user.list"])
	require.Equal(t, int64(100), counts["token.list"])
	for _, op := range []string{"user.fetch", "user.create", "user.update", "user.delete", "token.create", "token.update", "token.delete"} {
		require.Zero(t, counts[op], op)
	}

	code, out = cmd("sync", "-f", path, "--yes", "--force-updates", "--secrets-out", filepath.Join(t.TempDir(), "secrets.jsonl"))
	require.Equal(t, 0, code, out)
	e.ResetCounts()
	code, out = cmd("plan", "-f", path, "--detailed-exitcode")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "No changes.")
	require.Equal(t, int64(3), e.Counts()["user.list"])
	require.Equal(t, int64(100), e.Counts()["token.list"])
}
