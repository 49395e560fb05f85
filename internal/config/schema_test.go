package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func schemaProps(t *testing.T, obj map[string]any) []string {
	t.Helper()
	props, ok := obj["properties"].(map[string]any)
	require.True(t, ok, "object without properties: %v", obj)
	var names []string
	for n := range props {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func sortedKeyNames(specs []keySpec) []string {
	n := keyNames(specs)
	slices.Sort(n)
	return n
}

// TestSchemaListsExactlyTheLoaderKeys derives the expected keys from the loader's own
// tables, so a key added to the loader and not to the schema (or back) fails here.
func TestSchemaListsExactlyTheLoaderKeys(t *testing.T) {
	var root map[string]any
	require.NoError(t, json.Unmarshal(Schema(), &root), "Schema() must be valid JSON")
	assert.Equal(t, "https://json-schema.org/draft/2020-12/schema", root["$schema"])
	defs := root["$defs"].(map[string]any)

	for name, keys := range objects {
		obj := root
		if name != objConfig {
			obj = defs[name].(map[string]any)
		}
		assert.Equal(t, sortedKeyNames(keys), schemaProps(t, obj), name)
		assert.Equal(t, false, obj["additionalProperties"], name)
	}

	// Every object level with fixed keys is closed; only meta is free-form.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			_, props := v["properties"]
			_, required := v["required"]
			// A branch of the user's anyOf (which identity it has) refines a property of
			// the closed object it belongs to; it is not an object of its own.
			if props && !(required && strings.HasSuffix(path, "/anyOf/[]")) {
				assert.Equal(t, false, v["additionalProperties"], "additionalProperties at %s", path)
			}
			for k, e := range v {
				walk(path+"/"+k, e)
			}
		case []any:
			for _, e := range v {
				walk(path+"/[]", e)
			}
		}
	}
	walk("#", root)
}

// TestFullConfigUsesEveryKey checks that testdata/full.yaml, which must load, uses
// every key of every table: so every key the schema lists is one the loader accepts.
func TestFullConfigUsesEveryKey(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	require.NoError(t, err)
	_, err = LoadBytes("full.yaml", data, nil)
	require.NoError(t, err)

	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &doc))
	used := map[string]map[string]bool{}
	var keysOf func(obj string, n *yaml.Node)
	keysOf = func(obj string, n *yaml.Node) {
		if used[obj] == nil {
			used[obj] = map[string]bool{}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			used[obj][k] = true
			switch {
			case obj == objConfig && k == "prune":
				keysOf(objPrune, v)
			case obj == objConfig && k == "defaults":
				keysOf(objDefaults, v)
			case obj == objConfig && k == "users":
				for _, u := range v.Content {
					keysOf(objUser, u)
				}
			case obj == objUser && k == "tokens":
				for _, tk := range v.Content {
					keysOf(objToken, tk)
				}
			case (obj == objUser || obj == objDefaults) && k == "limits":
				keysOf(objLimits, v)
			case obj == objLimits && k == "database":
				keysOf(objDatabase, v)
			case obj == objLimits && k == "file":
				keysOf(objFile, v)
			case obj == objLimits && k == "attachment" && v.Kind == yaml.MappingNode:
				keysOf(objAttach, v)
			}
		}
	}
	keysOf(objConfig, doc.Content[0])
	for name, keys := range objects {
		var got []string
		for k := range used[name] {
			got = append(got, k)
		}
		slices.Sort(got)
		assert.Equal(t, sortedKeyNames(keys), got, name)
	}
}

// TestSchemaAgreesWithTheLoader keeps the schema an editor checks and the loader in
// step: each edge case is accepted by both or refused by both. A schema that accepts
// what the loader refuses sends a user from a green editor to a red CI.
func TestSchemaAgreesWithTheLoader(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource("cbk-sync.schema.json", doc))
	schema, err := c.Compile("cbk-sync.schema.json")
	require.NoError(t, err)

	token := func(rotate string) string {
		return "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens:\n      - name: ci\n        rotateAfter: " + rotate + "\n"
	}
	user := func(field string) string {
		return "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    " + field + "\n"
	}
	owner := func(o string) string { return "version: 1\nowner: " + o + "\n" }
	for name, tc := range map[string]struct {
		yaml string
		ok   bool
	}{
		"rotateAfter 30d":          {token("30d"), true},
		"rotateAfter 1d12h":        {token("1d12h"), true},
		"rotateAfter 720h":         {token("720h"), true},
		"rotateAfter 90m":          {token("90m"), true},
		"rotateAfter 1.5h":         {token("1.5h"), true},
		"rotateAfter 0.5h":         {token("0.5h"), true},
		"rotateAfter 1h30m10s":     {token("1h30m10s"), true},
		"rotateAfter null":         {token("null"), true},
		"rotateAfter empty":        {token(`""`), false},
		"rotateAfter 0d":           {token("0d"), false},
		"rotateAfter 0s":           {token("0s"), false},
		"rotateAfter 0d0h":         {token("0d0h"), false},
		"rotateAfter 00.00m":       {token("00.00m"), false},
		"rotateAfter negative":     {token("-1h"), false},
		"rotateAfter no unit":      {token(`"30"`), false},
		"rotateAfter weeks":        {token("2w"), false},
		"rotateAfter number":       {token("30"), false},
		"rotateAfter d only":       {token("d"), false},
		"rotateAfter sign in day":  {token("1d-1h"), false},
		"owner plain":              {owner("acme-platform"), true},
		"owner 63 chars":           {owner(strings.Repeat("a", 63)), true},
		"owner 64 chars":           {owner(strings.Repeat("a", 64)), false},
		"owner upper case":         {owner("Acme"), false},
		"owner underscore":         {owner("a_b"), false},
		"owner empty":              {owner(`""`), false},
		"version 2":                {"version: 2\nowner: acme\n", false},
		"no owner":                 {"version: 1\n", false},
		"email bad":                {"version: 1\nowner: acme\nusers:\n  - email: not-an-email\n", false},
		"limit zero":               {user("limits: {tokens: 0}"), true},
		"limit max":                {user("limits: {tokens: 9007199254740991}"), true},
		"limit over max":           {user("limits: {tokens: 9007199254740992}"), false},
		"limit negative":           {user("limits: {tokens: -1}"), false},
		"limit fraction":           {user("limits: {tokens: 1.5}"), false},
		"limit string":             {user(`limits: {tokens: "5"}`), false},
		"limit null":               {user("limits: {tokens: null}"), true},
		"meta plain":               {user("meta: {team: a}"), true},
		"meta underscore":          {user("meta: {_x: a}"), false},
		"meta dot":                 {user("meta: {a.b: a}"), false},
		"meta reserved":            {user("meta: {cbkSyncOwner: x}"), false},
		"meta nested hash":         {user("meta: {a: {'#x': 1}}"), false},
		"metaMode exact":           {user("metaMode: exact"), true},
		"metaMode bogus":           {user("metaMode: strict"), false},
		"token name empty":         {user("tokens: [{name: ''}]"), false},
		"tokens null":              {user("tokens: null"), false},
		"tokens empty":             {user("tokens: []"), true},
		"unknown key":              {user("nmae: x"), false},
		"prune string":             {"version: 1\nowner: acme\nprune: {users: 'yes'}\n", false},
		"by id":                    {"version: 1\nowner: acme\nusers:\n  - id: cm_1\n", true},
		"by id, email null":        {"version: 1\nowner: acme\nusers:\n  - id: cm_1\n    email: null\n", true},
		"by externalId alone":      {"version: 1\nowner: acme\nusers:\n  - externalId: cus_1\n", true},
		"email null alone":         {"version: 1\nowner: acme\nusers:\n  - email: null\n", false},
		"no identity":              {"version: 1\nowner: acme\nusers:\n  - name: A\n", false},
		"id empty":                 {"version: 1\nowner: acme\nusers:\n  - id: ''\n", false},
		"id with a slash":          {"version: 1\nowner: acme\nusers:\n  - id: a/b\n", false},
		"id as an alias":           {"version: 1\nowner: acme\nusers:\n  - id: '@a'\n", false},
		"externalId empty":         {"version: 1\nowner: acme\nusers:\n  - externalId: ''\n", false},
		"externalIdKey":            {"version: 1\nowner: acme\nexternalIdKey: clerkUserId\n", true},
		"externalIdKey dot":        {"version: 1\nowner: acme\nexternalIdKey: a.b\n", false},
		"externalIdKey underscore": {"version: 1\nowner: acme\nexternalIdKey: _a\n", false},
		"externalIdKey reserved":   {"version: 1\nowner: acme\nexternalIdKey: cbkSyncOwner\n", false},
	} {
		t.Run(name, func(t *testing.T) {
			_, loadErr := LoadBytes("c.yaml", []byte(tc.yaml), func(string) (string, bool) { return "", false })
			var v any
			require.NoError(t, yaml.Unmarshal([]byte(tc.yaml), &v))
			j, err := json.Marshal(v)
			require.NoError(t, err)
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			require.NoError(t, err)
			schemaErr := schema.Validate(inst)
			assert.Equal(t, tc.ok, loadErr == nil, "loader: %v", loadErr)
			assert.Equal(t, tc.ok, schemaErr == nil, "schema: %v", schemaErr)
		})
	}
}

// TestSchemaPatternsHaveMessages: every pattern carries a patternErrorMessage, so an
// editor (yaml-language-server) shows a sentence, not a regular expression.
func TestSchemaPatternsHaveMessages(t *testing.T) {
	var root map[string]any
	require.NoError(t, json.Unmarshal(Schema(), &root))
	assert.Equal(t, "https://github.com/cbk-sync/cbk-sync/releases/latest/download/cbk-sync.schema.json", root["$id"])
	n := 0
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["pattern"]; ok {
				n++
				msg, _ := v["patternErrorMessage"].(string)
				assert.NotEmpty(t, msg, "pattern without patternErrorMessage at %s", path)
				assert.NotContains(t, msg, `^`, "a message, not a regex, at %s", path)
			}
			for k, e := range v {
				walk(path+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s/%d", path, i), e)
			}
		}
	}
	walk("#", root)
	assert.GreaterOrEqual(t, n, 5)
}
