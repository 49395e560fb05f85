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
// the tokens of 100 of them. Polls (list requests) are what the platform limits: by
// default a plan must cost exactly 1 + T of them, one user stream and T = 100 token
// lists, plus one fetch (not a poll) showing the stream was whole; with --listing
// paged, ceil(250/100) = 3 user pages and no fetch. No write either way. After a
// sync, a plan must be empty.
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
	require.Equal(t, int64(1), counts["user.list"])
	require.Equal(t, int64(100), counts["token.list"])
	require.Equal(t, int64(1), counts["user.fetch"])
	for _, op := range []string{"user.create", "user.update", "user.delete", "token.create", "token.update", "token.delete"} {
		require.Zero(t, counts[op], op)
	}

	e.ResetCounts()
	code, out = cmd("plan", "-f", path, "--detailed-exitcode", "--force-updates", "--listing", "paged")
	require.Equal(t, exitPending, code, out)
	counts = e.Counts()
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
	require.Equal(t, int64(1), e.Counts()["user.list"])
	require.Equal(t, int64(100), e.Counts()["token.list"])
}

// TestPlanBaseReadsOnlyChangedTokenLists: a PR plan of 5,000 users that all declare
// tokens, where the change alters the tokens of 1% of them: one user stream (the
// listing is still whole) and 50 token lists, no more; the summary says how many
// users' tokens it did not check, in every view.
func TestPlanBaseReadsOnlyChangedTokenLists(t *testing.T) {
	const token = "sk-calls-test-token"
	const n, changed = 5000, 50
	e, err := emulator.New(emulator.Options{Token: token})
	require.NoError(t, err)
	var base, head strings.Builder
	for _, b := range []*strings.Builder{&base, &head} {
		b.WriteString("version: 1\nowner: acme\nusers:\n")
	}
	for i := range n {
		u, err := e.PutUser(state.User{Email: state.Some(fmt.Sprintf("u%04d@acme.test", i)), Name: state.Some(fmt.Sprint("User ", i)), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		_, err = e.PutToken(u.ID, state.Token{Name: state.Some("ci"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		entry := fmt.Sprintf("  - email: u%04d@acme.test\n    name: User %d\n    tokens:\n      - name: ci\n", i, i)
		base.WriteString(entry)
		head.WriteString(entry)
		if i%(n/changed) == 7 {
			head.WriteString("      - name: deploy\n") // the change: one more token
		}
	}
	dir := t.TempDir()
	basePath, headPath := filepath.Join(dir, "base.yaml"), filepath.Join(dir, "head.yaml")
	require.NoError(t, os.WriteFile(basePath, []byte(base.String()), 0o644))
	require.NoError(t, os.WriteFile(headPath, []byte(head.String()), 0o644))
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	defer stop(context.Background())
	cmd := func(args ...string) (int, string) {
		streams, out, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": token})
		code := run(context.Background(), append(args, "--api-url", url), streams)
		return code, out.String() + errOut.String()
	}

	for _, format := range []string{"text", "json", "markdown"} {
		e.ResetCounts()
		code, out := cmd("plan", "-f", headPath, "--base", basePath, "--detailed-exitcode", "-o", format)
		require.Equal(t, exitPending, code, out)
		counts := e.Counts()
		polls := counts["user.list"] + counts["token.list"]
		require.LessOrEqual(t, polls, int64(1+changed), "polls")
		require.Equal(t, int64(1), counts["user.list"])
		require.Equal(t, int64(changed), counts["token.list"])
		switch format {
		case "json":
			require.Contains(t, out, `"tokens_unchecked": 4950`)
			require.Contains(t, out, `"token_create": 50`)
		default:
			require.Contains(t, out, "Not checked: the tokens of 4950 users whose declared tokens this change leaves as they were")
			require.Contains(t, out, "the scheduled full plan checks them")
			require.Contains(t, out, "0 users to create, 0 to update, 0 to delete, 0 to adopt; 50 tokens to create")
		}
	}

	// The full plan reads every token list and finds the same changes (5,001 polls:
	// past the emulator's default poll limit, which the PR plans stayed under).
	e.SetFaults(emulator.Faults{PollLimit: -1})
	e.ResetCounts()
	code, out := cmd("plan", "-f", headPath, "--detailed-exitcode")
	require.Equal(t, exitPending, code, out)
	require.NotContains(t, out, "Not checked")
	require.Contains(t, out, "50 tokens to create")
	require.Equal(t, int64(n), e.Counts()["token.list"])

}
