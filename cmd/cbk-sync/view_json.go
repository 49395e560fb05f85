package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// jsonView is the machine view (--log-format json): every line on stderr is a JSON
// record, the plan there included; stdout holds what -o, --secrets-out - and
// --report - ask for, as in the text view. No progress bars.
type jsonView struct{ viewBase }

// Plan on stdout is as -o says; on stderr it is one record, msg "plan", with the
// -o json view (compact) under "plan" (the logger redacts it).
func (v *jsonView) Plan(p *plan.Plan) error {
	if !v.show.toStderr {
		return v.renderPlan(v.io.Out, p)
	}
	var b bytes.Buffer
	if err := plan.RenderJSON(&b, p); err != nil {
		return err
	}
	v.log.Info("plan", "plan", json.RawMessage(b.Bytes()))
	return nil
}

// ApplySummary is, as records: "not started" (count, reason) per reason of the
// skipped actions (each was logged with --verbose instead), then "apply complete" or
// "apply interrupted" (ok, failed, skipped, exit_code).
func (v *jsonView) ApplySummary(r *apply.Report) {
	if !v.verbose {
		reasons, skipped := skippedByReason(r)
		for _, reason := range reasons {
			v.log.Warn("not started", "count", skipped[reason], "reason", reason)
		}
	}
	v.log.Info("apply "+applyOutcome(r), "ok", r.Totals.OK, "failed", r.Totals.Failed, "skipped", r.Totals.Skipped, "exit_code", r.ExitCode)
}

// Error is one record per configuration problem (msg "configuration problem", with
// file, line, column, problem), then one record msg "error" with the error and the
// exit code.
func (v *jsonView) Error(err error, code int) {
	cerrs, msg, ok := shownError(err)
	if !ok {
		return
	}
	for _, e := range cerrs {
		v.log.Error("configuration problem", "file", e.Pos.File, "line", e.Pos.Line, "column", e.Pos.Column, "problem", e.Msg)
	}
	v.log.Error("error", "error", msg, "exit_code", code)
}

// UsageError is one record msg "error" with the error, the --help to read and the
// exit code.
func (v *jsonView) UsageError(err error, help string, _ bool) {
	v.log.Error("error", "error", err.Error(), "help", help+" --help", "exit_code", exitError)
}

func (v *jsonView) Bars() bool { return false }

// newJSONLogger logs JSON records to w. Durations are milliseconds, under a key that
// says so, and strings pass through plan.Printable too: JSON would leave C1 and bidi
// controls raw for whoever reads the log in a terminal (the text format quotes them).
func newJSONLogger(w io.Writer, level slog.Level, redact *state.Redactor) *slog.Logger {
	clean := cleanAttr(redact, func(s string) string { return plan.Printable(redact.String(s)) }, true)
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: clean}))
}

// cleanAttr is the logger's ReplaceAttr: every attribute, the message included,
// passes through clean (the redactor, at least), so a secret that reached a log call
// by mistake still never reaches the output; with millis, durations become
// milliseconds under key_ms.
func cleanAttr(redact *state.Redactor, clean func(string) string, millis bool) func([]string, slog.Attr) slog.Attr {
	return func(_ []string, a slog.Attr) slog.Attr {
		switch a.Value.Kind() {
		case slog.KindDuration:
			if millis {
				return slog.Int64(a.Key+"_ms", a.Value.Duration().Milliseconds())
			}
		case slog.KindString:
			a.Value = slog.StringValue(clean(a.Value.String()))
		case slog.KindAny:
			switch v := a.Value.Any().(type) {
			case error:
				a.Value = slog.StringValue(clean(v.Error()))
			case json.RawMessage: // a rendered view (the plan record)
				a.Value = slog.AnyValue(json.RawMessage(redact.Bytes(v)))
			case fmt.Stringer:
				a.Value = slog.StringValue(clean(v.String()))
			}
		}
		return a
	}
}
