package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEmulatorCommand serves `cbk-sync emulator`, creates a user through it with the
// token it was given, stops it as SIGINT would, and finds the user in the state file.
func TestEmulatorCommand(t *testing.T) {
	statePath := filepath.Join(t.TempDir(), "emu.json")
	const token = "sk-emulator-command-test"
	pr, pw := io.Pipe()
	streams, _, errOut := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": token})
	streams.Out = pw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"emulator", "--listen", "127.0.0.1:0", "--state", statePath}, streams)
		pw.Close()
	}()

	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err) // stderr is read only after the command has exited
	require.True(t, strings.HasPrefix(line, "cbk-sync emulator listening on http://127.0.0.1:"), line)
	url := strings.TrimSpace(strings.TrimPrefix(line, "cbk-sync emulator listening on "))
	go io.Copy(io.Discard, pr)

	post := func(tok string) int {
		req, err := http.NewRequest(http.MethodPost, url+"/v1/partner/user/create", strings.NewReader(`{"email":"a@acme.test"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, post("sk-wrong"))
	assert.Equal(t, http.StatusOK, post(token))

	cancel()
	require.Equal(t, 0, <-done, errOut.String())
	b, err := os.ReadFile(statePath)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"a@acme.test"`)
	assert.NotContains(t, string(b), token)
}

func TestEmulatorCommandRefusals(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no token":     {[]string{"emulator"}, nil, "the emulator needs the token its clients will send"},
		"not loopback": {[]string{"emulator", "--listen", "0.0.0.0:8787"}, map[string]string{"CHATBOTKIT_API_TOKEN": "sk-x"}, "--allow-non-loopback"},
		"bad rate":     {[]string{"emulator", "--fail-rate", "2"}, map[string]string{"CHATBOTKIT_API_TOKEN": "sk-x"}, "--fail-rate must be between 0 and 1"},
		"bad listen":   {[]string{"emulator", "--listen", "nonsense"}, map[string]string{"CHATBOTKIT_API_TOKEN": "sk-x"}, "--listen"},
	} {
		t.Run(name, func(t *testing.T) {
			streams, _, errOut := TestStreams("", tc.env)
			require.Equal(t, exitError, run(context.Background(), tc.args, streams))
			assert.Contains(t, errOut.String(), tc.want)
		})
	}
}

// fakeT records a fatal failure instead of stopping the test.
type fakeT struct{ failed []string }

func (f *fakeT) Skip(...any)                    {}
func (f *fakeT) Fatal(args ...any)              { f.failed = append(f.failed, fmt.Sprint(args...)) }
func (f *fakeT) Parallel()                      {}
func (f *fakeT) Log(...any)                     {}
func (f *fakeT) FailNow()                       {}
func (f *fakeT) Run(string, func(testscript.T)) {}
func (f *fakeT) Verbose() bool                  { return false }

// TestLeakCheckCatchesSecrets proves the check run after every script can fail: a
// secret in any file but a secrets sink is reported.
func TestLeakCheckCatchesSecrets(t *testing.T) {
	dir := t.TempDir()
	secret := "sk-" + strings.Repeat("ab", 32)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets.jsonl"), []byte(secret), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plan.txt"), []byte("clean"), 0o600))
	var clean fakeT
	checkNoSecrets(&clean, dir)
	assert.Empty(t, clean.failed, "the sink itself may hold secrets")

	require.NoError(t, os.WriteFile(filepath.Join(dir, ".transcript"), []byte("log "+secret), 0o600))
	var leaky fakeT
	checkNoSecrets(&leaky, dir)
	require.Len(t, leaky.failed, 1)
	assert.Contains(t, leaky.failed[0], ".transcript")
	assert.NotContains(t, leaky.failed[0], secret)
}
