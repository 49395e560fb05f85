// Package exitcode is the one table of cbk-sync's exit codes: the values the command
// returns, the result names the metrics use, and the sentences the man page, the
// metric's help, the GitHub Action and docs/output.md show. Everything that names an
// exit code reads it from here (docs/output.md's table is tested equal to Markdown).
package exitcode

import (
	"fmt"
	"strings"
)

// The exit codes. Only the command's Main turns them into a process status.
const (
	OK      = 0
	Error   = 1
	Pending = 2
	Partial = 3
	Unsafe  = 4
	Locked  = 5
)

// Code is one exit code and what it means.
type Code struct {
	Value int
	// Result is its name as a metric label (cbk_sync_last_run_result{result}).
	Result string
	// Short is a few words, for one-line lists (the metric's help, the Action's output).
	Short string
	// Meaning is the full sentence (docs, the man page). It may hold `code` spans.
	Meaning string
}

// All are the exit codes, in order.
var All = []Code{
	{OK, "success", "success", "success, and nothing pending"},
	{Error, "error", "error", "error (bad config, bad flag, API error before applying); nothing applied"},
	{Pending, "pending", "changes pending", "changes pending (only with `--detailed-exitcode`, for `plan` and `sync --dry-run`)"},
	{Partial, "partial", "partly applied", "apply partly failed or was interrupted, or anything failed after a write was made " +
		"(the report or the `--emulator` state could not be written); the report says what was and was not done"},
	{Unsafe, "unsafe", "refused as unsafe", "refused as unsafe: delete or update caps, takeover needed, a saved plan that is stale or was edited"},
	{Locked, "locked", "another run holds the lock", "another run holds the account's lock (and `--lock-timeout` ran out); nothing was changed (`cbk-sync unlock` breaks a lock whose holder is gone)"},
}

// Summary lists every code with its short meaning: "0 success, 1 error, ...".
func Summary() string {
	parts := make([]string, len(All))
	for i, c := range All {
		parts[i] = fmt.Sprintf("%d %s", c.Value, c.Short)
	}
	return strings.Join(parts, ", ")
}

// Markdown is the exit-code table of docs/output.md.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| code | meaning |\n|---|---|\n")
	for _, c := range All {
		fmt.Fprintf(&b, "| %d | %s |\n", c.Value, c.Meaning)
	}
	return b.String()
}

// Plain is s without Markdown code marks, for the man page.
func Plain(s string) string { return strings.ReplaceAll(s, "`", "") }
