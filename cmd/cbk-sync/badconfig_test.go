package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
)

// TestBadConfigMakesNoCall runs plan and sync on broken configurations: each must exit
// 1 with a message naming file:line:column (or the file), without a single API call.
// The exact messages of every rule are pinned in internal/config's TestBadConfigs.
func TestBadConfigMakesNoCall(t *testing.T) {
	bomb := "version: 1\nowner: acme\nusers: []\nx0: &l0 [a, a, a, a, a, a, a, a, a, a]\n"
	for i := 1; i < 12; i++ {
		bomb += fmt.Sprintf("x%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	cases := map[string]struct{ doc, want string }{
		"malformed":       {"version: 1\nowner: acme\nusers: [\n", "c.yaml:"},
		"tab":             {"version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n\tname: x\n", "c.yaml:5:1: "},
		"wrong type":      {"version: 1\nowner: acme\nprune: yes-please\n", "c.yaml:3:"},
		"duplicate email": {"version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n  - email: A@ACME.test\n", "c.yaml:5:"},
		"bad duration":    {"version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens: [{name: ci, rotateAfter: soon}]\n", "c.yaml:5:"},
		"negative limit":  {"version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: {messages: -5}\n", "c.yaml:5:"},
		"alias bomb":      {bomb, "c.yaml:"},
		"huge file":       {"version: 1\nowner: acme\n#" + strings.Repeat("x", 11<<20) + "\n", "c.yaml: "},
	}
	const token = "sk-bad-config-test"
	e, err := emulator.New(emulator.Options{Token: token})
	require.NoError(t, err)
	url, stop, err := emulator.Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	defer stop(context.Background())

	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(tc.doc), 0o644))
			for _, args := range [][]string{{"plan"}, {"sync", "--yes"}} {
				streams, out, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": token})
				file := filepath.Join(dir, "c.yaml")
				code := run(context.Background(), append(args, "-f", file, "--api-url", url), streams)
				assert.Equal(t, exitError, code, errOut.String())
				want := filepath.Join(dir, tc.want)
				assert.True(t, strings.HasPrefix(errOut.String(), want), "stderr %q does not start with %q", errOut.String(), want)
				assert.Contains(t, errOut.String(), "nothing was read or changed remotely")
				assert.Empty(t, out.String())
			}
			for op, n := range e.Counts() {
				assert.Zero(t, n, "%s was called", op)
			}
		})
	}
}
