package plan

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

func TestTokenListsNeeded(t *testing.T) {
	ci := state.DesiredToken{Name: "ci", Pos: state.Pos{Line: 3}}
	deploy := state.DesiredToken{Name: "deploy", RotateAfter: time.Hour}
	base := state.Desired{Owner: testOwner, Users: []state.DesiredUser{
		du("same@acme.test", withTokens(ci, deploy)),
		du("moved@acme.test", withTokens(ci, deploy)),
		du("renamed@acme.test", withName("old"), withTokens(ci)),
		du("rotation@acme.test", withTokens(deploy)),
		du("desc@acme.test", withTokens(ci)),
		du("exact@acme.test", withTokens(ci)),
		du("dropped@acme.test", withTokens(ci)),
		du("notokens@acme.test"),
		du("gone@acme.test", withTokens(ci)),
	}}
	moved := ci
	moved.Pos = state.Pos{Line: 40}
	desc := ci
	desc.Description = state.Some("CI")
	rot := deploy
	rot.RotateAfter = 2 * time.Hour
	head := state.Desired{Owner: testOwner, Users: []state.DesiredUser{
		du("same@acme.test", withTokens(ci, deploy)),
		du("MOVED@acme.test", withTokens(deploy, moved)), // other order, position, email case
		du("renamed@acme.test", withName("new"), withTokens(ci)),
		du("rotation@acme.test", withTokens(rot)),
		du("desc@acme.test", withTokens(desc)),
		du("exact@acme.test", withTokens(ci), func(u *state.DesiredUser) { u.MetaExact = true }),
		du("dropped@acme.test"),                // no longer manages tokens: nothing to read
		du("notokens@acme.test", withTokens()), // now manages them (revoke all)
		du("new@acme.test", withTokens(ci)),    // added by the change
		du("newbare@acme.test"),                // added, no tokens key
	}}
	need := TokenListsNeeded(base, head)
	assert.Equal(t, map[string]bool{
		"email:rotation@acme.test": true, "email:desc@acme.test": true, "email:exact@acme.test": true,
		"email:notokens@acme.test": true, "email:new@acme.test": true,
	}, need)

	other := base
	other.Owner = "other"
	assert.Len(t, TokenListsNeeded(other, head), 8, "another owner scope: every user that declares tokens")
}

// A partial plan plans no token change for a user whose list was not read, counts
// it, and every view says so; users whose lists were read are planned as usual.
func TestComputePartialCountsUncheckedUsers(t *testing.T) {
	d := state.Desired{Owner: testOwner, Users: []state.DesiredUser{
		du("a@acme.test", withTokens(state.DesiredToken{Name: "ci"})),
		du("b@acme.test", withTokens(state.DesiredToken{Name: "ci"})),
		du("c@acme.test", withName("C"), withTokens(state.DesiredToken{Name: "ci"})),
		du("new@acme.test", withTokens(state.DesiredToken{Name: "ci"})),
	}}
	a := actual(remoteUser("ua", "a@acme.test", ownedMeta()), remoteUser("ub", "b@acme.test", ownedMeta()), remoteUser("uc", "c@acme.test", ownedMeta()))
	a = withTokenList(a, "ua")

	_, err := Compute(d, a, DefaultOptions(testNow))
	require.ErrorIs(t, err, ErrTokensNotRead, "a full plan still needs every list")

	p, err := ComputePartial(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	assert.Equal(t, 2, p.TokensUnchecked, "b and c exist and were not read; new is created")
	assert.ElementsMatch(t, []string{
		"token_create a@acme.test/ci [meta.cbkSyncOwner]", "user_update c@acme.test [name]",
		"user_create new@acme.test [email,meta.cbkSyncOwner]", "token_create new@acme.test/ci [meta.cbkSyncOwner]",
	}, describePlan(&p))

	var text, md, js bytes.Buffer
	require.NoError(t, RenderText(&text, &p, TextOptions{}))
	require.NoError(t, RenderMarkdown(&md, &p))
	require.NoError(t, RenderJSON(&js, &p))
	const say = "Not checked: the tokens of 2 users whose declared tokens this change leaves as they were"
	assert.Contains(t, text.String(), say+" (plan --base reads only the token lists the change touches); the scheduled full plan checks them.\n")
	assert.Contains(t, md.String(), "> [!NOTE]\n> "+say)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &doc))
	assert.Equal(t, 2.0, doc["tokens_unchecked"])
	assert.Contains(t, doc["tokens_unchecked_note"], say)

	full, err := Compute(d, withTokenList(withTokenList(a, "ub"), "uc"), DefaultOptions(testNow))
	require.NoError(t, err)
	text.Reset()
	require.NoError(t, RenderText(&text, &full, TextOptions{}))
	assert.NotContains(t, text.String(), "Not checked")
	js.Reset()
	require.NoError(t, RenderJSON(&js, &full))
	assert.NotContains(t, js.String(), "tokens_unchecked")
}
