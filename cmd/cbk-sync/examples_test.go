package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/metrics"
)

// kubeDocs reads every YAML document of examples/kubernetes.
func kubeDocs(t *testing.T) map[string][]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "kubernetes", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string][]map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
			kind, _ := doc["kind"].(string)
			meta, _ := doc["metadata"].(map[string]any)
			require.NotEmpty(t, doc["apiVersion"], "%s: a document without apiVersion", f)
			require.NotEmpty(t, kind, "%s: a document without kind", f)
			require.NotEmpty(t, meta["name"], "%s: a %s without metadata.name", f, kind)
			out[kind] = append(out[kind], doc)
		}
	}
	return out
}

// walk calls fn for every map in v, at any depth, with the key it is under.
func walk(v any, key string, fn func(key string, m map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(key, v)
		for k, c := range v {
			walk(c, k, fn)
		}
	case []any:
		for _, c := range v {
			walk(c, key, fn)
		}
	}
}

// TestKubernetesExample checks what a cluster cannot be asked here: every image is
// pinned (a tag that is not latest, or a digest), nothing needs a feature gate or the
// node (image volumes, hostPath), the drift job fails on pending changes, metrics go
// to a pushgateway, and the alert rules are valid (promtool) and name metrics a run
// writes. (kubeconform validates the manifests' schemas in .ci/run.)
func TestKubernetesExample(t *testing.T) {
	docs := kubeDocs(t)
	require.Len(t, docs["CronJob"], 2)
	require.Len(t, docs["PrometheusRule"], 1)

	pinned := regexp.MustCompile(`^[a-z0-9./-]+(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:[0-9a-f]{64})?$`)
	images := 0
	for _, cj := range docs["CronJob"] {
		walk(cj, "", func(key string, m map[string]any) {
			if img, ok := m["image"].(string); ok && (key == "containers" || key == "initContainers") {
				images++
				assert.Regexp(t, pinned, img)
				assert.True(t, strings.Contains(img, "@sha256:") || (strings.Contains(img, ":") && !strings.HasSuffix(img, ":latest")),
					"image %s is not pinned", img)
			}
			if _, ok := m["image"].(map[string]any); ok && key == "volumes" {
				t.Errorf("an image volume needs a feature gate: %v", m)
			}
			assert.NotContains(t, m, "hostPath", "a hostPath volume writes to the node")
		})
	}
	assert.GreaterOrEqual(t, images, 3)

	text, err := os.ReadFile(filepath.Join("..", "..", "examples", "kubernetes", "cronjob.yaml"))
	require.NoError(t, err)
	var drift map[string]any
	for _, cj := range docs["CronJob"] {
		if cj["metadata"].(map[string]any)["name"] == "cbk-sync-drift" {
			drift = cj
		}
	}
	require.NotNil(t, drift)
	driftText, err := yaml.Marshal(drift)
	require.NoError(t, err)
	assert.Contains(t, string(driftText), "--detailed-exitcode", "the drift job must fail when changes are pending")
	assert.Equal(t, 2, strings.Count(string(text), "--pushgateway http")+strings.Count(string(driftText), "- --pushgateway\n"),
		"both jobs push their metrics")

	// The alert rules: promtool accepts them, and each names only metrics a run writes.
	rule := docs["PrometheusRule"][0]
	spec := rule["spec"].(map[string]any)
	rules, err := yaml.Marshal(map[string]any{"groups": spec["groups"]})
	require.NoError(t, err)
	descs, err := metrics.Catalog()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, d := range descs {
		known[d.Name] = true
	}
	for _, m := range regexp.MustCompile(`\bcbk_sync_[a-z_]+`).FindAllString(string(rules), -1) {
		assert.True(t, known[m], "the alert rules name %s, which no run writes", m)
	}
	assert.Contains(t, string(rules), "cbk_sync_last_success_timestamp_seconds")

	promtool := requireTool(t, "promtool", "promtool check rules on the example's alert rules")
	f := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(f, rules, 0o644))
	out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s\n%s", out, rules)
	assert.Contains(t, string(out), "SUCCESS: 5 rules found")
}
