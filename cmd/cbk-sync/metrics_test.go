package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pushgatewayEnv names the URL of a real pushgateway for TestScheduledRunMetrics
// (.ci/run starts prometheus-pushgateway on loopback and sets it).
const pushgatewayEnv = "CBK_SYNC_PUSHGATEWAY_URL"

// requireTool returns the path of an outside tool the test needs: missing, the test
// is skipped, or fails when CI=true.
func requireTool(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI=true: %s must run)", name, why)
		}
		t.Skipf("%s is not installed; skipping %s", name, why)
	}
	return p
}

type families map[string]*dto.MetricFamily

func parseMetrics(t *testing.T, text []byte) families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err, "%s", text)
	return mfs
}

// value is the gauge name{labels...} (name=value pairs), or -1 when absent.
func (f families) value(name string, labels ...string) float64 {
	mf := f["cbk_sync_"+name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if label(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestScheduledRunMetrics runs a scheduled sync, a failed run and a plan with
// --metrics-file and --pushgateway against a real pushgateway, and checks the textfile
// with promtool: what monitoring of a CronJob reads.
func TestScheduledRunMetrics(t *testing.T) {
	gateway := os.Getenv(pushgatewayEnv)
	if gateway == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (CI=true: .ci/run starts prometheus-pushgateway and sets it)", pushgatewayEnv)
		}
		t.Skipf("%s is not set: start prometheus-pushgateway --web.listen-address=127.0.0.1:9091 and set it to http://127.0.0.1:9091", pushgatewayEnv)
	}
	promtool := requireTool(t, "promtool", "promtool check metrics on the textfile")
	h := newSavedHarness(t)
	job := fmt.Sprintf("cbk-sync-test-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, gateway+"/metrics/job/"+job, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	promFile := filepath.Join(h.dir, "textfile", "cbk-sync.prom")
	flags := []string{"--metrics-file", promFile, "--pushgateway", gateway, "--pushgateway-job", job}
	cfg := h.file("c.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n  - email: b@acme.test\n    tokens: [{name: ci}]\n")

	check := func() families {
		t.Helper()
		text, err := os.ReadFile(promFile)
		require.NoError(t, err)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(text)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool check metrics:\n%s\n%s", out, text)
		return parseMetrics(t, text)
	}
	pushed := func() families {
		t.Helper()
		resp, err := http.Get(gateway + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		all := parseMetrics(t, body)
		mine := families{}
		for name, mf := range all {
			var ms []*dto.Metric
			for _, m := range mf.GetMetric() {
				if label(m, "job") == job {
					ms = append(ms, m)
				}
			}
			if len(ms) > 0 {
				mf.Metric = ms
				mine[name] = mf
			}
		}
		return mine
	}

	// 1. The scheduled sync: two creates and a token.
	before := time.Now()
	code, out := h.run(append([]string{"sync", "-f", cfg, "--yes", "--secrets-out", filepath.Join(h.dir, "secrets.jsonl")}, flags...)...)
	require.Equal(t, 0, code, out)

	f := check()
	assert.Equal(t, 1.0, f.value("last_run_result", "command", "sync", "result", "success"))
	assert.Equal(t, 0.0, f.value("last_run_result", "command", "sync", "result", "error"))
	assert.Equal(t, 0.0, f.value("last_run_exit_code", "command", "sync"))
	assert.Equal(t, 2.0, f.value("actions", "action", "user_create", "outcome", "ok"))
	assert.Equal(t, 1.0, f.value("actions", "action", "token_create", "outcome", "ok"))
	assert.Equal(t, 0.0, f.value("actions", "action", "user_create", "outcome", "failed"))
	// The calls are the emulator's own count (the run's lock lease is a call too).
	counts := h.e.Counts()
	assert.Equal(t, float64(counts["user.create"]), f.value("api_calls", "operation", "user.create"))
	assert.GreaterOrEqual(t, counts["user.create"], int64(2))
	assert.Equal(t, float64(counts["token.create"]), f.value("api_calls", "operation", "token.create"))
	assert.Equal(t, 0.0, f.value("api_retries"))
	assert.Equal(t, 0.0, f.value("api_throttled_responses"))
	assert.Equal(t, f.value("api_calls", "operation", "user.list")+f.value("api_calls", "operation", "token.list"), f.value("polls"), "every list request is a poll")
	assert.Equal(t, 0.0, f.value("poll_rejections"))
	assert.Equal(t, 0.0, f.value("poll_wait_seconds"))
	assert.Equal(t, -1.0, f.value("pending_changes", "action", "user_create"), "a run that applied reports actions, not pending changes")
	success := f.value("last_success_timestamp_seconds", "command", "sync")
	assert.GreaterOrEqual(t, success, float64(before.Unix()))
	assert.Equal(t, success, f.value("last_run_timestamp_seconds", "command", "sync"))
	assert.Positive(t, f.value("last_run_duration_seconds", "command", "sync"))

	p := pushed()
	assert.Equal(t, success, p.value("last_success_timestamp_seconds", "command", "sync"))
	assert.Equal(t, 2.0, p.value("actions", "action", "user_create", "outcome", "ok"))
	assert.Equal(t, 1.0, p.value("last_run_result", "result", "success"))

	// 2. A failed run: the result says so, and the last success survives in the file
	// and at the gateway.
	bad := h.file("bad.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    nmae: x\n")
	code, out = h.run(append([]string{"sync", "-f", bad, "--yes"}, flags...)...)
	require.Equal(t, 1, code, out)
	f = check()
	assert.Equal(t, 1.0, f.value("last_run_result", "command", "sync", "result", "error"))
	assert.Equal(t, 0.0, f.value("last_run_result", "command", "sync", "result", "success"))
	assert.Equal(t, 1.0, f.value("last_run_exit_code", "command", "sync"))
	assert.Equal(t, success, f.value("last_success_timestamp_seconds", "command", "sync"))
	assert.Greater(t, f.value("last_run_timestamp_seconds", "command", "sync"), success)
	p = pushed()
	assert.Equal(t, 1.0, p.value("last_run_exit_code", "command", "sync"))
	assert.Equal(t, success, p.value("last_success_timestamp_seconds", "command", "sync"))

	// 3. A plan with changes pending reports them per action.
	changed := h.file("changed.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: New\n  - email: b@acme.test\n    tokens: [{name: ci}]\n  - email: c@acme.test\n")
	code, out = h.run(append([]string{"plan", "-f", changed, "--detailed-exitcode"}, flags...)...)
	require.Equal(t, 2, code, out)
	f = check()
	assert.Equal(t, 1.0, f.value("last_run_result", "command", "plan", "result", "pending"))
	assert.Equal(t, 1.0, f.value("pending_changes", "command", "plan", "action", "user_update"))
	assert.Equal(t, 1.0, f.value("pending_changes", "command", "plan", "action", "user_create"))
	assert.Equal(t, 0.0, f.value("pending_changes", "command", "plan", "action", "user_delete"))
	assert.Equal(t, -1.0, f.value("actions", "command", "plan", "action", "user_update", "outcome", "ok"))
	assert.Equal(t, -1.0, f.value("last_success_timestamp_seconds", "command", "sync"),
		"the file holds one run's metrics; each command keeps its own file")
}

// TestMetricsFileCheckedFirst: an unwritable --metrics-file fails before any API call.
func TestMetricsFileCheckedFirst(t *testing.T) {
	h := newSavedHarness(t)
	cfg := h.file("c.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n")
	blocker := h.file("blocker", "a file, not a directory")
	code, out := h.run("sync", "-f", cfg, "--yes", "--metrics-file", filepath.Join(blocker, "m.prom"))
	require.Equal(t, 1, code, out)
	assert.Contains(t, out, "--metrics-file")
	for op, n := range h.e.Counts() {
		assert.Zero(t, n, "%s called", op)
	}
	code, out = h.run("plan", "-f", cfg, "--pushgateway", "pushgateway:9091")
	require.Equal(t, 1, code, out)
	assert.Contains(t, out, "not an http(s) URL")
}

func TestMetricsNeverCarrySecrets(t *testing.T) {
	h := newSavedHarness(t)
	cfg := h.file("c.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens: [{name: ci}]\n")
	promFile := filepath.Join(h.dir, "m.prom")
	secrets := filepath.Join(h.dir, "secrets.jsonl")
	code, out := h.run("sync", "-f", cfg, "--yes", "--secrets-out", secrets, "--metrics-file", promFile)
	require.Equal(t, 0, code, out)
	text, err := os.ReadFile(promFile)
	require.NoError(t, err)
	assert.NotContains(t, string(text), "sk-")
	assert.NotContains(t, string(text), savedToken)
	s, err := os.ReadFile(secrets)
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(s), `"token":"sk-`))
}

// TestAccountUsersMetrics: the metrics of a plan count the account's users by their
// relation to the files, so that a scheduled job can alert on sign-ups the files do
// not declare yet; promtool accepts the file (it must run in CI).
func TestAccountUsersMetrics(t *testing.T) {
	h := newSavedHarness(t)
	h.put("a@acme.test", "acme")
	h.put("orphan@acme.test", "acme")
	h.put("signup1@acme.test", "")
	h.put("signup2@acme.test", "")
	h.put("f@other.test", "other")
	cfg := h.file("c.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: Old\n")
	promFile := filepath.Join(h.dir, "m.prom")
	code, out := h.run("plan", "-f", cfg, "--metrics-file", promFile)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "5 users seen: 1 declared, 1 owned and not declared, 2 unmanaged, 1 foreign; 4 not declared.")
	text, err := os.ReadFile(promFile)
	require.NoError(t, err)
	f := parseMetrics(t, text)
	for relation, want := range map[string]float64{"declared": 1, "owned_undeclared": 1, "unmanaged": 2, "foreign": 1} {
		assert.Equal(t, want, f.value("account_users", "command", "plan", "relation", relation), relation)
	}
	promtool := requireTool(t, "promtool", "promtool check metrics on the account gauges")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	pout, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s\n%s", pout, text)
}

// TestPushgatewayPasswordNeverOnTheCommandLine: a password in --pushgateway (which ps
// shows) is refused, pointing at CBK_SYNC_PUSHGATEWAY_PASSWORD, which is sent as basic
// auth with the user of the URL and shown nowhere.
func TestPushgatewayPasswordNeverOnTheCommandLine(t *testing.T) {
	h := newSavedHarness(t)
	cfg := h.file("c.yaml", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n")
	const pw = "hunter2-pushgateway-pw"
	code, out := h.run("plan", "-f", cfg, "--pushgateway", "https://ops:"+pw+"@127.0.0.1:1")
	require.Equal(t, 1, code, out)
	assert.Contains(t, out, "CBK_SYNC_PUSHGATEWAY_PASSWORD")
	assert.NotContains(t, out, pw)

	var gotUser, gotPass string
	var gotAuth bool
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, gotAuth = r.BasicAuth()
		w.WriteHeader(http.StatusUnauthorized) // and the error must not show the password
	}))
	defer gw.Close()
	u := strings.Replace(gw.URL, "http://", "http://ops@", 1)
	streams, stdout, stderr := TestStreams("", map[string]string{"CHATBOTKIT_API_TOKEN": savedToken, "CBK_SYNC_PUSHGATEWAY_PASSWORD": pw})
	code = run(context.Background(), []string{"plan", "-f", cfg, "--api-url", h.url, "--pushgateway", u}, streams)
	require.Equal(t, 0, code, stderr.String())
	assert.True(t, gotAuth, "basic auth sent")
	assert.Equal(t, "ops", gotUser)
	assert.Equal(t, pw, gotPass)
	assert.Contains(t, stderr.String(), "metrics not pushed")
	assert.NotContains(t, stdout.String()+stderr.String(), pw)
}
