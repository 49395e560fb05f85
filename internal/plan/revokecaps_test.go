package plan

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// revokeWorld is n users each with tokens owned tokens, of which pending are pending;
// the desired state declares the users with no token, so every token is revoked.
func revokeWorld(n, tokens, pending int) (state.Desired, state.Actual) {
	d := state.Desired{Owner: testOwner}
	var users []state.User
	lists := map[string][]state.Token{}
	for i := range n {
		id, email := fmt.Sprintf("u%d", i), fmt.Sprintf("u%d@x.test", i)
		d.Users = append(d.Users, du(email, withTokens()))
		users = append(users, remoteUser(id, email, ownedMeta()))
		for j := range tokens {
			m := ownedMeta()
			if j < pending {
				m = ownedMeta(state.PendingKey, true)
			}
			lists[id] = append(lists[id], remoteToken(fmt.Sprintf("t%d-%d", i, j), fmt.Sprint("t", j), m, time.Hour))
		}
	}
	return d, state.Actual{Users: users, Tokens: lists}
}

// Revoking 40 owned tokens at once is unsafe until forced: the plan says which cap
// and by how much. Pending tokens (whose secrets nobody has) are not counted.
func TestTokenRevocationCaps(t *testing.T) {
	d, a := revokeWorld(10, 4, 0)
	p, err := Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.False(t, p.Safety.Safe)
	assert.Equal(t, 40, p.Safety.TokenRevokes)
	assert.Equal(t, 40, p.Safety.OwnedTokens)
	assert.ElementsMatch(t, []string{
		"the plan revokes 40 tokens, 20 more than --max-token-revokes 20; pass --force-token-revokes to allow it",
		"the plan revokes 40 of 40 owned tokens (100%), more than --max-token-revoke-percent 25 allows (10 tokens, so 30 over); pass --force-token-revokes to allow it",
	}, p.Safety.Reasons)

	o := DefaultOptions(testNow)
	o.ForceTokenRevokes = true
	p, err = Compute(d, a, o)
	require.NoError(t, err)
	assert.True(t, p.Safety.Safe)
	assert.Contains(t, strings.Join(p.Warnings, "\n"), "the plan revokes 40 tokens, 20 more than --max-token-revokes 20; allowed by --force-token-revokes")

	// The same 40 revocations, 30 of them of pending tokens: 10 count, of 10 owned.
	d, a = revokeWorld(10, 4, 3)
	p, err = Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.True(t, p.Safety.Safe, "%v", p.Safety.Reasons)
	assert.Equal(t, 10, p.Safety.TokenRevokes)
	assert.Equal(t, 10, p.Safety.OwnedTokens)

	// A plan saved before the caps existed is read back without them.
	d, a = revokeWorld(10, 4, 0)
	o = DefaultOptions(testNow)
	o.ForceTokenRevokes = true
	p, err = Compute(d, a, o)
	require.NoError(t, err)
	var buf strings.Builder
	require.NoError(t, WriteSaved(&buf, NewSaved(d, a, o, &p)))
	old := strings.NewReplacer(`"max_token_revokes": 20,`, "", `"max_token_revoke_percent": 25,`, "", `"force_token_revokes": true,`, "").Replace(buf.String())
	require.NotEqual(t, buf.String(), old)
	s, err := ReadSaved(strings.NewReader(old))
	require.NoError(t, err)
	assert.Equal(t, -1, s.Options.MaxTokenRevokes)
	_, err = s.Check()
	require.NoError(t, err)
}
