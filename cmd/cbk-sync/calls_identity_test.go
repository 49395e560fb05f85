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

// TestPlanByIdentityReadsTheSame plans 5,000 users named by externalId, by id and by
// email, T = 100 of them declaring tokens: each costs 1 + T polls, the one user stream
// and the T token lists, since every identity is matched from the one listing (never a
// filtered listing per user); and each finds the same (no) changes.
func TestPlanByIdentityReadsTheSame(t *testing.T) {
	const token = "sk-calls-test-token"
	const n, withTokens = 5000, 100
	e, err := emulator.New(emulator.Options{Token: token})
	require.NoError(t, err)
	configs := map[string]*strings.Builder{"externalId": {}, "id": {}, "email": {}}
	for _, b := range configs {
		b.WriteString("version: 1\nowner: acme\nusers:\n")
	}
	owned := func(kv ...any) state.Opt[state.Meta] {
		m := state.Meta{state.OwnerKey: "acme"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return state.Some(m)
	}
	for i := range n {
		u, err := e.PutUser(state.User{Email: state.Some(fmt.Sprintf("u%04d@acme.test", i)), Name: state.Some(fmt.Sprint("User ", i)),
			Meta: owned(state.DefaultExternalIDKey, fmt.Sprintf("cus_%04d", i))})
		require.NoError(t, err)
		_, err = e.PutToken(u.ID, state.Token{Name: state.Some("ci"), Meta: owned()})
		require.NoError(t, err)
		tokens := ""
		if i%(n/withTokens) == 3 {
			tokens = "    tokens:\n      - name: ci\n"
		}
		fmt.Fprintf(configs["externalId"], "  - externalId: cus_%04d\n    name: User %d\n%s", i, i, tokens)
		fmt.Fprintf(configs["id"], "  - id: %s\n    name: User %d\n%s", u.ID, i, tokens)
		fmt.Fprintf(configs["email"], "  - email: u%04d@acme.test\n    name: User %d\n%s", i, i, tokens)
	}
	dir := t.TempDir()
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	defer stop(context.Background())
	for _, kind := range []string{"email", "externalId", "id"} {
		path := filepath.Join(dir, kind+".yaml")
		require.NoError(t, os.WriteFile(path, []byte(configs[kind].String()), 0o644))
		e.ResetCounts()
		streams, out, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": token})
		code := run(context.Background(), []string{"plan", "-f", path, "--detailed-exitcode", "--api-url", url}, streams)
		require.Equal(t, 0, code, "%s: %s%s", kind, out, errOut)
		require.Contains(t, out.String(), "No changes.", kind)
		counts := e.Counts()
		require.Equal(t, int64(1), counts["user.list"], "%s: user listings", kind)
		require.Equal(t, int64(withTokens), counts["token.list"], "%s: token lists", kind)
	}
}
