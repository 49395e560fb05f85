package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// textView is the human view: log lines as key=value text, the plan as -o says, the
// apply's end and the error as sentences, progress bars on a terminal.
type textView struct{ viewBase }

func (v *textView) Plan(p *plan.Plan) error { return v.renderPlan(v.planOut(), p) }

func (v *textView) ApplySummary(r *apply.Report) {
	printApplySummary(v.io.ErrOut, r, v.verbose)
}

// printApplySummary ends an apply on w: each failure on its own line, the skipped
// actions counted by reason in one line each (each of them only with --verbose: an
// interrupted run may skip thousands), then the totals.
func printApplySummary(w io.Writer, r *apply.Report, verbose bool) {
	for _, res := range r.Results {
		if res.Status == apply.StatusOK || (res.Status == apply.StatusSkipped && !verbose) {
			continue
		}
		what := res.Email
		if res.TokenName != "" {
			what += " token " + res.TokenName
		}
		fmt.Fprintf(w, "%s %s %s: %s\n", res.Status, res.Action, plan.Printable(what), plan.Printable(res.Error))
	}
	if !verbose {
		reasons, skipped := skippedByReason(r)
		for _, reason := range reasons {
			fmt.Fprintf(w, "%s %s: %s (each is in the report and with --verbose)\n", plan.Count(skipped[reason], "action", "actions"), "skipped", plan.Printable(reason))
		}
	}
	fmt.Fprintf(w, "Apply %s: %d ok, %d failed, %d skipped.\n", applyOutcome(r), r.Totals.OK, r.Totals.Failed, r.Totals.Skipped)
}

// Error shows the error on stderr: configuration problems one per line with their
// count, anything else as "error: ...". An exit code without an error (the plan
// already said why) prints nothing.
func (v *textView) Error(err error, _ int) { printError(v.io, v.redact, err) }

func printError(io *IOStreams, redact *state.Redactor, err error) {
	cerrs, msg, ok := shownError(err)
	if !ok {
		return
	}
	// An error may carry remote text (an API error body) or a config value: escaped, it
	// stays one line and cannot drive the terminal.
	for _, e := range cerrs {
		fmt.Fprintln(io.ErrOut, plan.Printable(redact.String(e.Error())))
	}
	fmt.Fprintf(io.ErrOut, "error: %s\n", plan.Printable(redact.String(msg)))
}

func (v *textView) UsageError(err error, help string, usage bool) {
	fmt.Fprintf(v.io.ErrOut, "error: %v\n", err)
	if usage {
		fmt.Fprintf(v.io.ErrOut, "Run '%s --help' for usage.\n", help)
	}
}

func (v *textView) Bars() bool { return true }

// newTextLogger logs key=value lines to w, without the time (a terminal or a CI log
// has its own).
func newTextLogger(w io.Writer, level slog.Level, redact *state.Redactor) *slog.Logger {
	clean := cleanAttr(redact, redact.String, false)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return clean(groups, a)
		},
	}))
}
