package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegisterAndCarryLastSuccess(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ok := Run{Command: "sync", Start: start, Duration: 2 * time.Second, ExitCode: 0, LastSuccess: start.Add(2 * time.Second),
		Actions: []string{"user_create"}, Applied: map[string]map[string]int{"user_create": {"ok": 3}},
		Calls: map[string]int64{"user.create": 3}, Retries: 1, Throttled: 2}
	reg := prometheus.NewRegistry()
	require.NoError(t, Register(reg, ok))
	text, err := Text(reg)
	require.NoError(t, err)
	s := string(text)
	for _, want := range []string{
		`cbk_sync_actions{action="user_create",command="sync",outcome="ok"} 3`,
		`cbk_sync_actions{action="user_create",command="sync",outcome="failed"} 0`,
		`cbk_sync_api_calls{command="sync",operation="user.create"} 3`,
		`cbk_sync_api_retries{command="sync"} 1`,
		`cbk_sync_api_throttled_responses{command="sync"} 2`,
		`cbk_sync_last_run_duration_seconds{command="sync"} 2`,
		`cbk_sync_last_run_result{command="sync",result="success"} 1`,
		`cbk_sync_last_run_result{command="sync",result="partial"} 0`,
		`cbk_sync_last_success_timestamp_seconds{command="sync"} 1.767323047e+09`,
	} {
		assert.Contains(t, s, want+"\n")
	}
	assert.NotContains(t, s, "pending_changes")
	assert.NotContains(t, s, "poll", "no poll metrics where the client does not count polls")

	got, found := LastSuccess(text, "sync")
	require.True(t, found)
	assert.Equal(t, ok.LastSuccess, got)
	_, found = LastSuccess(text, "plan")
	assert.False(t, found, "each command has its own last success")
	_, found = LastSuccess([]byte("garbage {{{"), "sync")
	assert.False(t, found)

	// A failed run without a last success leaves the series out (a pushgateway keeps
	// the one pushed before).
	failed := Run{Command: "sync", Start: start, ExitCode: 3, Poll: &Poll{Polls: 4, Wait: time.Second}}
	reg = prometheus.NewRegistry()
	require.NoError(t, Register(reg, failed))
	text, err = Text(reg)
	require.NoError(t, err)
	assert.NotContains(t, string(text), "last_success")
	assert.Contains(t, string(text), `cbk_sync_last_run_result{command="sync",result="partial"} 1`)
	assert.Contains(t, string(text), `cbk_sync_polls{command="sync"} 4`)
	assert.Contains(t, string(text), `cbk_sync_poll_wait_seconds{command="sync"} 1`)
	assert.False(t, failed.Succeeded())
	assert.True(t, Run{ExitCode: 2}.Succeeded(), "changes pending is a plan's answer, not a failure")
	assert.Equal(t, 1, strings.Count(string(text), "# TYPE cbk_sync_last_run_result gauge"))
}
