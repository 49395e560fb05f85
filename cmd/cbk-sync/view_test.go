package main

import (
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestViewIsChosenFromTheFlags: the view of a run, and where and how it shows the
// plan, come from the flags once (newView, planShowOf): --log-format picks the view,
// -o and the Markdown cap the plan's format, and --secrets-out - or --report - send
// the plan to stderr, for sync and apply alike.
func TestViewIsChosenFromTheFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		json bool
		show planShow
	}{
		{args: []string{"plan", "-f", "c.yaml"}, show: planShow{format: "text"}},
		{args: []string{"plan", "-f", "c.yaml", "-o", "markdown", "--max-bytes", "100"}, show: planShow{format: "markdown", markdown: mdCap(100)}},
		{args: []string{"--log-format", "json", "sync", "-f", "c.yaml", "-o", "json"}, json: true, show: planShow{format: "json"}},
		{args: []string{"sync", "-f", "c.yaml", "--report", "-"}, show: planShow{format: "text", toStderr: true}},
		{args: []string{"--log-format=json", "sync", "-f", "c.yaml", "--secrets-out", "-"}, json: true, show: planShow{format: "text", toStderr: true}},
		{args: []string{"apply", "view_test.go", "-o", "markdown", "--report", "-"}, show: planShow{format: "markdown", toStderr: true}},
		{args: []string{"show", "view_test.go", "-o", "markdown", "--max-bytes", "7"}, show: planShow{format: "markdown", markdown: mdCap(7)}},
		{args: []string{"validate", "-f", "c.yaml"}},
	} {
		var cli CLI
		parser, err := kong.New(&cli, modelOptions()...)
		require.NoError(t, err)
		kctx, err := parser.Parse(tc.args)
		require.NoError(t, err, tc.args)
		assert.Equal(t, tc.show, planShowOf(kctx), tc.args)
		streams, _, _ := TestStreams("", nil)
		v := newView(streams, cli.Globals, state.NewRedactor(), planShowOf(kctx))
		_, isJSON := v.(*jsonView)
		assert.Equal(t, tc.json, isJSON, tc.args)
		assert.Equal(t, !tc.json, v.Bars(), tc.args)
	}
}

func mdCap(n int) plan.MarkdownOptions { return plan.MarkdownOptions{MaxBytes: n} }
