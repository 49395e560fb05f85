package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/stretchr/testify/require"
)

// fenceTrialsEnv sets the number of seeded trials of each TestFencing scenario
// (default 3, 2 with -short: each trial waits out a lease or a Retry-After of seconds;
// the measurement runs CBK_FENCE_TRIALS=10 and more).
const fenceTrialsEnv = "CBK_FENCE_TRIALS"

// TestFencing stalls the lock's holder past its lease, then runs another sync, over
// seeded trials of two scenarios, and requires that no token is ever created twice
// and that every secret is delivered once:
//
//   - stop: the holder (run a, --parallelism 1) is SIGSTOPped while its K+1-th token
//     create is held at the server by the gate; the held create is then either let
//     through (odd trials: sent while the lease held, it stands) or answered 429 with
//     Retry-After 1s (even trials: not processed, so a will repeat it). Run b waits
//     (--lock-timeout) until the lease has expired by the server's clock, takes it
//     over and applies; then a is continued. a's queued writes, the repeat included,
//     must not be sent: its own clock says its lease may have expired (the fence), so
//     it exits 3, saying the lock was lost.
//   - throttle: the holder's K+1-th token create is answered 429 with a Retry-After
//     longer than the lease. The renewal has its own client, so the lease stays held
//     through the pause: b waits for a to finish, then finds its approved plan
//     changed under the lock and nothing left to do.
//
// (Before the fence and the independent renewal, both scenarios sent a's queued
// writes after b had taken the lease over: duplicate tokens.) Nothing sleeps: the
// runs are put in step by the emulator's gate, its 429 and call counts, and by the
// waiting of b for the lease, which is what is tested.
func TestFencing(t *testing.T) {
	trials := 3
	if testing.Short() {
		trials = 2
	}
	if v := os.Getenv(fenceTrialsEnv); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, fenceTrialsEnv)
		trials = n
	}
	dir := t.TempDir()
	for trial := range trials {
		rng := rand.New(rand.NewPCG(uint64(trial), 18))
		users := 2 + rng.IntN(3)
		k := rng.IntN(2*users - 1) // a has at least one token create left after it
		for _, kind := range []string{"stop", "throttle"} {
			name := filepath.Join(dir, fmt.Sprintf("%s_%02d.txtar", kind, trial))
			require.NoError(t, os.WriteFile(name, []byte(fenceScript(kind, users, k, trial%2 == 0)), 0o644))
		}
	}
	testscript.Run(t, scriptParams(dir))
}

func fenceScript(kind string, users, k int, reject bool) string {
	tokens := 2 * users
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	run := "sync -f config.yaml --yes --lock-ttl 2s"
	w("# %s: %d users, %d tokens; the holder is stalled after %d token creates (held create rejected: %v)", kind, users, tokens, k, reject)
	w("emu start")
	switch kind {
	case "stop":
		w("[!unix] skip 'SIGSTOP'")
		w("emu gate /token/create %d", k)
		w("proc start a cbk-sync %s --parallelism 1 --secrets-out a-secrets.jsonl", run)
		w("emu gate-wait")
		w("proc signal a STOP")
		if reject {
			w("emu throttle /token/create 0 1")
		}
		w("emu gate-open")
		w("exec cbk-sync %s --lock-timeout 1m --secrets-out b-secrets.jsonl", run)
		w("stderr 'took over an? (expired )?lock'")
		w("stderr 'Apply complete: [0-9]+ ok, 0 failed, 0 skipped.'")
		w("proc signal a CONT")
		w("! proc wait a")
		w("stderr 'the lock on this account was lost'")
		w("stderr 'cbk-sync-test: exit 3'")
	case "throttle":
		w("emu throttle /token/create %d 5", k)
		w("exec cbk-sync %s --secrets-out a-secrets.jsonl &a&", run)
		w("emu throttle-wait")
		w("exec cbk-sync %s --lock-timeout 1m --secrets-out b-secrets.jsonl", run)
		w("stderr 'waiting for another run.s lock'")
		w("! stderr 'took over'")
		w("stdout 'No changes.'")
		w("wait a")
		w("stderr 'Apply complete: %d ok, 0 failed, 0 skipped.'", users+tokens)
	}
	// No token twice, every live one delivered exactly once (to one of the two sinks),
	// no lease left, and nothing left to do.
	w("emu unique")
	w("emu dump")
	w("! stdout 'cbk-sync-lock'")
	w("cp stdout dump.txt")
	w("exec grep -c '^  token ' dump.txt")
	w("stdout '^%d$'", tokens)
	w("emu delivered a-secrets.jsonl b-secrets.jsonl")
	w("exec cbk-sync plan -f config.yaml --detailed-exitcode")
	w("stdout 'No changes.'")
	w("-- config.yaml --")
	w("version: 1\nowner: acme\nusers:")
	for i := range users {
		w("  - email: u%d@acme.test\n    name: User %d\n    tokens:\n      - name: ci\n      - name: deploy", i, i)
	}
	return b.String()
}
