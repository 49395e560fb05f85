package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// actionStep is the step of action.yml with id, as the runner would run it.
type actionStep struct {
	Run string            `yaml:"run"`
	Env map[string]string `yaml:"env"`
}

func loadActionStep(t *testing.T, id string) (actionStep, map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "action.yml"))
	require.NoError(t, err)
	var a struct {
		Inputs map[string]struct {
			Default string `yaml:"default"`
		} `yaml:"inputs"`
		Runs struct {
			Steps []struct {
				ID         string `yaml:"id"`
				actionStep `yaml:",inline"`
			} `yaml:"steps"`
		} `yaml:"runs"`
	}
	require.NoError(t, yaml.Unmarshal(b, &a))
	defaults := map[string]string{}
	for k, v := range a.Inputs {
		defaults[k] = v.Default
	}
	for _, s := range a.Runs.Steps {
		if s.ID == id {
			return s.actionStep, defaults
		}
	}
	t.Fatalf("action.yml has no step %q", id)
	return actionStep{}, nil
}

var exprRE = regexp.MustCompile(`\$\{\{\s*([^}]+?)\s*\}\}`)

// runActionStep runs the step's script as a composite action's bash step runs
// (bash --noprofile --norc -eo pipefail), with its env expressions evaluated from
// inputs and ctx, and returns its outputs ($GITHUB_OUTPUT) and step summary.
func runActionStep(t *testing.T, step actionStep, inputs, ctx map[string]string, dir string) (map[string]string, string) {
	t.Helper()
	outFile, summary := filepath.Join(dir, "output"), filepath.Join(dir, "summary.md")
	require.NoError(t, os.WriteFile(outFile, nil, 0o644))
	require.NoError(t, os.WriteFile(summary, nil, 0o644))
	env := append(os.Environ(), "GITHUB_OUTPUT="+outFile, "GITHUB_STEP_SUMMARY="+summary, "RUNNER_TEMP="+dir, "CHATBOTKIT_API_TOKEN=")
	for k, v := range step.Env {
		v = exprRE.ReplaceAllStringFunc(v, func(m string) string {
			e := exprRE.FindStringSubmatch(m)[1]
			if name, ok := strings.CutPrefix(e, "inputs."); ok {
				return inputs[name]
			}
			val, ok := ctx[e]
			require.True(t, ok, "no value for ${{ %s }}", e)
			return val
		})
		env = append(env, k+"="+v)
	}
	script := filepath.Join(dir, "step.sh")
	require.NoError(t, os.WriteFile(script, []byte(step.Run), 0o644))
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", script)
	cmd.Env, cmd.Dir = env, dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	outputs := map[string]string{}
	b, err := os.ReadFile(outFile)
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			outputs[k] = v
		}
	}
	s, err := os.ReadFile(summary)
	require.NoError(t, err)
	return outputs, string(s)
}

// TestActionRunStep runs the Action's main step, as the runner does, against the
// emulator: a plan of 300 new users (its comment cut under the cap with the note),
// then command sync (plan, then apply the saved plan), then a plan with nothing left.
func TestActionRunStep(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		requireTool(t, "jq", "the Action's run step (jq is on every GitHub runner)")
	}
	step, defaults := loadActionStep(t, "run")
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("version: 1\nowner: acme\nusers:\n")
	for i := range 300 {
		fmt.Fprintf(&cfg, "  - email: user%03d@acme.test\n    name: User %d\n    description: Sandbox of the platform team\n    meta: {team: platform}\n    tokens: [{name: ci}, {name: deploy}]\n", i, i)
	}
	config := filepath.Join(dir, "chatbotkit.yaml")
	require.NoError(t, os.WriteFile(config, []byte(cfg.String()), 0o644))
	emu := filepath.Join(dir, "emulator.json")
	ctx := map[string]string{"github.server_url": "https://github.com", "github.repository": "acme/users", "github.run_id": "42"}
	inputs := func(command string) map[string]string {
		in := map[string]string{}
		for k, v := range defaults {
			in[k] = v
		}
		in["config"], in["command"] = config, command
		in["plan-args"], in["apply-args"] = "--emulator "+emu+" --emulator-init", "--emulator "+emu+" --emulator-init"
		in["secrets-out"] = filepath.Join(dir, "secrets.jsonl")
		return in
	}

	out, summary := runActionStep(t, step, inputs("plan"), ctx, dir)
	assert.Equal(t, "2", out["exit-code"])
	assert.Equal(t, "true", out["changes-pending"])
	assert.Equal(t, "300", out["user-create"])
	assert.Equal(t, "600", out["token-create"])
	assert.Equal(t, "0", out["user-delete"])
	var sum map[string]int
	require.NoError(t, json.Unmarshal([]byte(out["summary"]), &sum))
	assert.Equal(t, 300, sum["user_create"])
	planDir := out["plan-dir"]
	comment, err := os.ReadFile(filepath.Join(planDir, "comment.md"))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(comment), 60000)
	assert.Contains(t, string(comment), "This plan was cut to fit 60000 bytes.")
	assert.Contains(t, string(comment), "The full plan: <https://github.com/acme/users/actions/runs/42>")
	full, err := os.ReadFile(filepath.Join(planDir, "plan.md"))
	require.NoError(t, err)
	assert.Greater(t, len(full), 65536, "the full plan is over GitHub's comment limit")
	assert.Equal(t, string(full), summary, "the step summary has the whole plan")
	for _, f := range []string{"plan.txt", "plan.json", "plan.saved.json"} {
		assert.FileExists(t, filepath.Join(planDir, f))
	}
	_, err = os.Stat(emu)
	assert.True(t, os.IsNotExist(err), "plan wrote nothing, not even the emulator's state")
	var ids struct {
		ByEmail map[string]*string `json:"by_email"`
	}
	require.NoError(t, json.Unmarshal([]byte(out["ids"]), &ids), "the ids output")
	assert.Len(t, ids.ByEmail, 300)
	assert.Nil(t, ids.ByEmail["user007@acme.test"], "in a plan, a user to create maps to null")
	assert.Equal(t, filepath.Join(planDir, "ids.json"), out["ids-file"])

	out, summary = runActionStep(t, step, inputs("sync"), ctx, dir)
	assert.Equal(t, "0", out["exit-code"], summary)
	assert.Equal(t, "true", out["changes-pending"])
	assert.Contains(t, summary, "**Applied:** 900 ok, 0 failed, 0 skipped.")
	fi, err := os.Stat(filepath.Join(dir, "secrets.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	secrets, err := os.ReadFile(filepath.Join(dir, "secrets.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, 600, strings.Count(string(secrets), `"token":"sk-`))
	// After sync, ids-file maps every created user to its new ID.
	idsJSON, err := os.ReadFile(out["ids-file"])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(idsJSON, &ids))
	require.Len(t, ids.ByEmail, 300)
	for email, id := range ids.ByEmail {
		require.NotNil(t, id, email)
	}
	for _, f := range []string{"plan.txt", "plan.md", "comment.md", "plan.json", "plan.saved.json", "report.json"} {
		b, err := os.ReadFile(filepath.Join(out["plan-dir"], f))
		require.NoError(t, err, f)
		assert.False(t, secretRE.Match(b), "%s holds a secret", f)
	}

	out, _ = runActionStep(t, step, inputs("plan"), ctx, dir)
	assert.Equal(t, "0", out["exit-code"])
	assert.Equal(t, "false", out["changes-pending"])
	assert.Equal(t, "0", out["user-create"])
}

// TestActionSecretsExec: the Action's secrets-exec input hands each secret to the
// command (on its stdin) instead of the secrets-out file.
func TestActionSecretsExec(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		requireTool(t, "jq", "the Action's run step (jq is on every GitHub runner)")
	}
	step, defaults := loadActionStep(t, "run")
	dir := t.TempDir()
	config := filepath.Join(dir, "chatbotkit.yaml")
	require.NoError(t, os.WriteFile(config, []byte("version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens: [{name: ci}, {name: deploy}]\n"), 0o644))
	emu := filepath.Join(dir, "emulator.json")
	in := map[string]string{}
	for k, v := range defaults {
		in[k] = v
	}
	in["config"], in["command"] = config, "sync"
	in["plan-args"], in["apply-args"] = "--emulator "+emu+" --emulator-init", "--emulator "+emu+" --emulator-init"
	in["secrets-exec"] = `sh -c 'cat >> "$0"' ` + filepath.Join(dir, "exec-secrets.jsonl")
	ctx := map[string]string{"github.server_url": "https://github.com", "github.repository": "acme/users", "github.run_id": "42"}
	out, summary := runActionStep(t, step, in, ctx, dir)
	assert.Equal(t, "0", out["exit-code"], summary)
	b, err := os.ReadFile(filepath.Join(dir, "exec-secrets.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(b), `"token":"sk-`))
	plan, err := os.ReadFile(filepath.Join(out["plan-dir"], "plan.txt"))
	require.NoError(t, err)
	assert.Contains(t, string(plan), "Secrets of new tokens go to the command sh -c")
}
