package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/config"
)

// exampleConfigs are the configuration files in examples/: the YAML files that name
// the schema in their first line.
func exampleConfigs(t *testing.T) []string {
	var files []string
	err := filepath.WalkDir(filepath.Join("..", "..", "examples"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.HasPrefix(b, []byte("# yaml-language-server: $schema=")) {
			files = append(files, path)
		}
		return err
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 4, "the example configurations were not found")
	return files
}

// TestSchemaValidatesExamples checks the output of `cbk-sync schema` with a JSON
// Schema validator against every example configuration, and that each also loads.
func TestSchemaValidatesExamples(t *testing.T) {
	streams, out, errOut := TestStreams("", nil)
	require.Equal(t, 0, run(context.Background(), []string{"schema"}, streams), errOut.String())

	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(out.Bytes()))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("cbk-sync.schema.json", doc))
	schema, err := c.Compile("cbk-sync.schema.json")
	require.NoError(t, err)

	for _, path := range exampleConfigs(t) {
		t.Run(path, func(t *testing.T) {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			var v any
			require.NoError(t, yaml.Unmarshal(b, &v))
			j, err := json.Marshal(v)
			require.NoError(t, err)
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			require.NoError(t, err)
			require.NoError(t, schema.Validate(inst))
			_, err = config.Load([]string{path}, func(string) (string, bool) { return "", false })
			require.NoError(t, err)
		})
	}

	// The schema also rejects what the loader rejects.
	bad, err := jsonschema.UnmarshalJSON(strings.NewReader(`{"version": 1, "owner": "acme", "users": [{"email": "a@b.test", "nmae": "x"}]}`))
	require.NoError(t, err)
	require.Error(t, schema.Validate(bad))
}

// TestShippedSchemaIsCurrent keeps examples/cbk-sync.schema.json, which the example
// files name for editors, equal to what `cbk-sync schema` prints.
func TestShippedSchemaIsCurrent(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "examples", "cbk-sync.schema.json"))
	require.NoError(t, err)
	require.Equal(t, string(config.Schema()), string(shipped), "run: go run ./cmd/cbk-sync schema > examples/cbk-sync.schema.json")
}
