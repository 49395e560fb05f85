package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestTerminalPromptAndColour checks what only a terminal changes: sync asks and
// proceeds only on "yes", and the plan is coloured unless NO_COLOR or --no-color.
func TestTerminalPromptAndColour(t *testing.T) {
	const token = "sk-terminal-test"
	e, err := emulator.New(emulator.Options{Token: token})
	require.NoError(t, err)
	_, err = e.PutUser(state.User{Email: state.Some("a@acme.test"), Name: state.Some("old"), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
	require.NoError(t, err)
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	defer stop(context.Background())
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: new\n"), 0o644))

	term := func(stdin string, env map[string]string, args ...string) (int, string, string) {
		env["CHATBOTKIT_API_TOKEN"] = token
		streams, out, errOut := TestStreams(stdin, env)
		streams.SetTTY(true, true, true)
		code := run(context.Background(), append(args, "--api-url", url), streams)
		return code, out.String(), errOut.String()
	}

	code, out, _ := term("", map[string]string{}, "plan", "-f", cfg)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "\x1b[", "a plan on a terminal is coloured")
	_, out, _ = term("", map[string]string{"NO_COLOR": "1"}, "plan", "-f", cfg)
	assert.NotContains(t, out, "\x1b[", "NO_COLOR")
	_, out, _ = term("", map[string]string{}, "plan", "-f", cfg, "--no-color")
	assert.NotContains(t, out, "\x1b[", "--no-color")

	for _, answer := range []string{"no\n", "y\n", "YES\n", ""} {
		code, _, errOut := term(answer, map[string]string{}, "sync", "-f", cfg)
		assert.Equal(t, exitError, code, "answer %q", answer)
		assert.Contains(t, errOut, "Only 'yes' will be accepted")
		assert.Contains(t, errOut, "apply cancelled; nothing was changed")
	}
	assert.Zero(t, e.Counts()["user.update"], "nothing may be written without a yes")

	code, _, errOut := term("yes\n", map[string]string{}, "sync", "-f", cfg)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, int64(1), e.Counts()["user.update"])
}

// TestTerminalShowsThePollWait: on a terminal, the progress line shows the polls in the
// window against the budget, and while the window holds the reading back, that it
// waits and for how long; the log has one line for the wait.
func TestTerminalShowsThePollWait(t *testing.T) {
	const token = "sk-terminal-poll-test"
	e, err := emulator.New(emulator.Options{Token: token, Faults: emulator.Faults{PollLimit: 3, PollWindow: 2 * time.Second}})
	require.NoError(t, err)
	var cfg strings.Builder
	cfg.WriteString("version: 1\nowner: acme\nusers:\n")
	for i := range 4 {
		email := fmt.Sprintf("u%d@acme.test", i)
		_, err = e.PutUser(state.User{Email: state.Some(email), Meta: state.Some(state.Meta{state.OwnerKey: "acme"})})
		require.NoError(t, err)
		fmt.Fprintf(&cfg, "  - email: %s\n    tokens: []\n", email)
	}
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	defer stop(context.Background())
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg.String()), 0o644))

	streams, _, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": token})
	streams.SetTTY(true, true, true)
	code := run(context.Background(), []string{"plan", "-f", path, "--api-url", url, "--poll-budget", "3", "--poll-window", "2s"}, streams)
	require.Equal(t, 0, code, errOut.String())
	assert.Contains(t, errOut.String(), "polls 3/3 per 2s")
	assert.Regexp(t, `waiting for the poll window, next in [0-9.]+m?s`, errOut.String())
	assert.Equal(t, 1, strings.Count(errOut.String(), "poll budget reached: waiting for the window to slide"))
	assert.Zero(t, e.FaultCounts()["poll_limit"])
}
