package plan

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestIDsMapEveryDeclaredUser: every declared user's identities map to its platform ID,
// null for a user the plan creates, and the ID an apply gave it once created.
func TestIDsMapEveryDeclaredUser(t *testing.T) {
	d := state.Desired{Owner: testOwner, Users: []state.DesiredUser{
		{ID: "u-one"},
		{ExternalID: "cus_2", Email: state.Some("two@acme.test")},
		{ExternalID: "cus_3"},
		du("four@acme.test"),
	}}
	a := actual(
		remoteUser("u-one", "one@acme.test", ownedMeta()),
		remoteUser("u-two", "two@acme.test", ownedMeta("externalId", "cus_2")),
		remoteUser("u-s", "signup@acme.test", state.Null[state.Meta]()),
	)
	p, err := Compute(d, a, DefaultOptions(testNow))
	require.NoError(t, err)
	f := p.IDs(nil)
	b, err := json.Marshal(f)
	require.NoError(t, err)
	assert.JSONEq(t, `{"owner": "acme",
		"by_email": {"one@acme.test": "u-one", "two@acme.test": "u-two", "four@acme.test": null},
		"by_external_id": {"cus_2": "u-two", "cus_3": null},
		"by_id": {"u-one": "u-one"},
		"users": [
			{"identity": "email", "email": "four@acme.test", "id": null},
			{"identity": "externalId", "email": "two@acme.test", "external_id": "cus_2", "id": "u-two"},
			{"identity": "externalId", "external_id": "cus_3", "id": null},
			{"identity": "id", "email": "one@acme.test", "id": "u-one"}]}`, string(b))

	created := map[string]string{
		state.Identity{Kind: state.ByExternalID, Value: "cus_3"}.Key(): "u-new",
	}
	f = p.IDs(created)
	assert.Equal(t, "u-new", *f.ByExternalID["cus_3"])
	assert.Nil(t, f.ByEmail["four@acme.test"], "not created by this run")
}
