package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestConcurrentRuns runs two cbk-sync processes against one emulator at the same
// time, 10 trials each of two syncs of one config and of two applies of one saved
// plan. The first run is held at its first token create, so it holds the account's
// lock while the second starts: in even trials the second gives up at once (exit 5,
// nothing read or written), in odd ones it waits (--lock-timeout) until the first
// releases the lock, then finds nothing to do (sync) or the saved plan stale (apply,
// exit 4). Every trial ends with each declared token created exactly once, every
// secret delivered once, no lease user left, and an empty plan. The runs are put in
// step by the emulator's gate and call counts, never by sleeping. (Before the lock,
// two syncs at once created every token twice, both exiting 0.)
func TestConcurrentRuns(t *testing.T) {
	trials := 10
	if testing.Short() {
		trials = 2
	}
	dir := t.TempDir()
	for trial := range trials {
		users := 2 + trial%4
		for _, kind := range []string{"sync", "apply"} {
			script := concurrentScript(kind, trial%2 == 1, users)
			name := filepath.Join(dir, fmt.Sprintf("%s_%02d.txtar", kind, trial))
			if err := os.WriteFile(name, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	testscript.Run(t, scriptParams(dir))
}

func concurrentScript(kind string, wait bool, users int) string {
	tokens := 2 * users
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	run := "sync -f config.yaml --yes"
	w("emu start")
	if kind == "apply" {
		w("exec cbk-sync plan -f config.yaml --out plan.json")
		run = "apply plan.json"
	}
	w("emu gate /token/create 0")
	w("exec cbk-sync %s --secrets-out a-secrets.jsonl &a&", run)
	w("emu gate-wait")
	if !wait {
		w("! exec cbk-sync %s --secrets-out b-secrets.jsonl", run)
		w("stderr 'another cbk-sync run holds the lock on this account \\(holder \"[^\"]+/[0-9]+/[0-9a-f]+\"'")
		w("stderr 'nothing was changed'")
		w("stderr 'cbk-sync-test: exit 5'")
		w("emu gate-open")
		w("wait a")
		w("stderr 'Apply complete: %d ok, 0 failed, 0 skipped.'", users+tokens)
	} else {
		neg := ""
		if kind == "apply" {
			neg = "! " // the plan it waited to apply is stale once the first has applied it
		}
		// The first run's reads are done (it is held at its first token create), the
		// fetch that proves its user stream whole included: count from here.
		w("emu reset-calls")
		w("%sexec cbk-sync %s --secrets-out b-secrets.jsonl --lock-timeout 1m &b&", neg, run)
		// The second run found the lease and polls it by fetch: it is waiting. (A sync
		// plans first, without the lock: its stream's last user is one fetch more.)
		fetches := 1
		if kind == "sync" {
			fetches = 2
		}
		w("emu wait-calls user.fetch %d", fetches)
		w("emu gate-open")
		w("wait a")
		w("stderr 'Apply complete: %d ok, 0 failed, 0 skipped.'", users+tokens)
		if kind == "sync" {
			w("wait b")
			w("stderr 'waiting for another run.s lock'")
			w("stdout 'No changes.'")
		} else {
			w("wait b")
			w("stderr 'waiting for another run.s lock'")
			w("stderr 'remote state changed since the plan was saved'")
			w("stderr 'cbk-sync-test: exit 4'")
		}
	}
	w("emu calls token.create %d", tokens)
	w("exec grep -c '\"token\":\"sk-' a-secrets.jsonl")
	w("stdout '^%d$'", tokens)
	w("! exists b-secrets.jsonl")
	w("emu dump")
	w("! stdout 'cbk-sync-lock'")
	w("cp stdout dump.txt")
	w("exec grep -c '^  token ' dump.txt")
	w("stdout '^%d$'", tokens)
	w("exec grep -c '^user ' dump.txt")
	w("stdout '^%d$'", users)
	w("exec cbk-sync plan -f config.yaml --detailed-exitcode")
	w("stdout 'No changes.'")
	w("-- config.yaml --")
	w("version: 1\nowner: acme\nusers:")
	for i := range users {
		w("  - email: u%d@acme.test\n    name: User %d\n    tokens:\n      - name: ci\n      - name: deploy", i, i)
	}
	return b.String()
}
