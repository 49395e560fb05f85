package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestHumanLinesEscapeControlCharacters: the apply summary and the error line show
// names and remote text escaped, on one line each, with no character a terminal acts on.
func TestHumanLinesEscapeControlCharacters(t *testing.T) {
	var b bytes.Buffer
	printApplySummary(&b, &apply.Report{Results: []apply.Result{{
		Action: plan.TokenCreate, Email: "eve@acme.test", TokenName: "ci\x1b[2J\nok token_create done",
		Status: apply.StatusFailed, Error: "500: <html>\r\x1b]0;pwned\x07\u202e",
	}}, Totals: apply.Totals{Failed: 1}}, false)
	out := b.String()
	assert.Equal(t, 2, strings.Count(out, "\n"), out)
	assert.Contains(t, out, `failed token_create eve@acme.test token ci\x1b[2J\nok token_create done: 500: <html>\r\x1b]0;pwned\x07\u202e`)
	assert.NotRegexp(t, "\x1b|\r|\x07|\u202e", out)

	streams, _, errOut := TestStreams("", nil)
	printError(streams, state.NewRedactor(), errors.New("user.update: 400 BAD_REQUEST: \x1b[31mnope\nerror: forged"))
	assert.Equal(t, "error: user.update: 400 BAD_REQUEST: \\x1b[31mnope\\nerror: forged\n", errOut.String())
}
