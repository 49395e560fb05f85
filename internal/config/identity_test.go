package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestIdentityErrors pins the messages of each identity rule, positions included.
func TestIdentityErrors(t *testing.T) {
	const head = "version: 1\nowner: acme\n"
	cases := []struct{ name, doc, want string }{
		{"no identity", head + "users:\n  - name: A\n",
			`c.yaml:4:5: this user has no identity: add "email: <address>", "externalId: <your own key for the user>" or "id: <the platform's user id>"`},
		{"null email as identity", head + "users:\n  - email: null\n",
			`c.yaml:4:12: email is null, but it is this user's identity: give the address, or name the user by "id" or "externalId" (then "email: null" clears its email)`},
		{"empty id", head + "users:\n  - id: \"\"\n",
			`c.yaml:4:9: id must not be empty: give a value`},
		{"alias as id", head + "users:\n  - id: \"@acme\"\n",
			`c.yaml:4:9: invalid id "@acme": an id cannot start with "@" (that is how the API names an alias): write the user's platform id`},
		{"id with a slash", head + "users:\n  - id: a/b\n",
			"c.yaml:4:9: invalid id \"a/b\": it contains \"/\", which no platform id has: copy the id from `cbk-sync export --identity id` or the platform"},
		{"duplicate id", head + "users:\n  - id: u1\n  - id: u1\n",
			`c.yaml:5:9: duplicate id "u1": c.yaml:4:9 already declares it; remove or merge one of the two users`},
		{"duplicate externalId", head + "users:\n  - externalId: cus_1\n  - externalId: cus_1\n",
			`c.yaml:5:17: duplicate externalId "cus_1": c.yaml:4:17 already declares it; remove or merge one of the two users`},
		{"duplicate email under another identity", head + "users:\n  - id: u1\n    email: a@acme.test\n  - email: A@acme.test\n",
			`c.yaml:6:12: duplicate email "A@acme.test": c.yaml:5:12 already declares it (emails compare case-insensitively); remove or merge one of the two users`},
		{"external key in meta", head + "users:\n  - email: a@acme.test\n    meta: { externalId: x }\n",
			`c.yaml:5:13: meta key "externalId" is this file's externalIdKey: declare it as "externalId: <value>" on the user instead (it is then the user's identity, and stored in meta under "externalId")`},
		{"own external key in defaults' meta", head + "externalIdKey: clerkId\ndefaults:\n  meta: { clerkId: x }\nusers: []\n",
			`c.yaml:5:11: meta key "clerkId" is this file's externalIdKey: declare it as "externalId: <value>" on the user instead (it is then the user's identity, and stored in meta under "clerkId")`},
		{"bad external key", head + "externalIdKey: a.b\n",
			`c.yaml:3:16: externalIdKey "a.b": it contains ".", which the API's meta filter reads as nesting: choose a key without one`},
		{"id in defaults", head + "defaults:\n  id: u1\n",
			`c.yaml:4:3: "id" cannot be in defaults: it names one user; move it into the users`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadBytes("c.yaml", []byte(c.doc), nil)
			require.Error(t, err)
			assert.Equal(t, c.want, err.Error())
		})
	}
}

func TestIdentitiesAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(doc), 0o600))
		return p
	}
	a := write("a.yaml", "version: 1\nowner: acme\nexternalIdKey: clerkId\nusers:\n  - externalId: c1\n")
	b := write("b.yaml", "version: 1\nowner: acme\nusers:\n  - externalId: c2\n    email: b@acme.test\n")
	d, err := Load([]string{a, b}, nil)
	require.NoError(t, err)
	assert.Equal(t, "clerkId", d.ExternalIDKey, "one file setting it is enough")
	assert.Equal(t, state.Meta{"clerkId": "c2"}, d.Users[1].Meta.Value())
	assert.Equal(t, "b@acme.test", d.Users[1].Email.Value())

	c := write("c.yaml", "version: 1\nowner: acme\nexternalIdKey: stripeId\nusers:\n  - externalId: c1\n")
	_, err = Load([]string{a, c}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), c+`:3:16: externalIdKey is "stripeId" here but "clerkId" at `+a+`:3:16: the files that set externalIdKey must agree`)
	assert.Contains(t, err.Error(), c+`:5:17: duplicate externalId "c1": `+a+`:5:17 already declares it`)

	// A file that does not set the key may not declare the run's key in meta.
	e := write("e.yaml", "version: 1\nowner: acme\nusers:\n  - email: e@acme.test\n    meta: { clerkId: x }\n")
	_, err = Load([]string{a, e}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), e+`:4:5: this user's meta declares "clerkId", the externalIdKey set at `+a+`:3:16`)
}
