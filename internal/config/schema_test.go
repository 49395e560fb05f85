package config

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

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
			if _, ok := v["properties"]; ok {
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
