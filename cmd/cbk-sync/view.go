package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"

	"github.com/alecthomas/kong"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// view is how a run shows what happens: its log, its plan, the end of an apply and
// the error it ends with. There are two: the human one (text on stderr, textView) and
// the machine one (--log-format json, every stderr line a JSON record, jsonView).
// newView picks one from the flags once per run; commands speak only through it.
type view interface {
	// Log is the run's logger, in the view's format; every value passes through the
	// run's redactor.
	Log() *slog.Logger
	// Plan shows p as the command's flags say (planShow).
	Plan(p *plan.Plan) error
	// ApplySummary ends an apply on stderr: the failures, the skipped actions counted
	// by reason, and the totals. The failures were logged as they happened.
	ApplySummary(r *apply.Report)
	// Error shows the error a command ended with, if there is one to show, and its
	// exit code.
	Error(err error, code int)
	// UsageError shows an error met while parsing the command line; help is the
	// command whose --help to point at, and usage whether the error is about usage
	// (kong's parse error) rather than the model itself.
	UsageError(err error, help string, usage bool)
	// Bars reports whether the view has room for progress bars (a terminal decides
	// the rest: see newProgress).
	Bars() bool
}

// planShow is how a command shows its plan: the format of -o, the Markdown cap, and
// whether stdout carries something else (the secrets or the report: the plan then
// goes to stderr).
type planShow struct {
	format   string
	markdown plan.MarkdownOptions
	toStderr bool
}

// planShower is a command that shows a plan.
type planShower interface{ planShow() planShow }

// planShowOf is how the selected command shows its plan; the zero planShow (text, on
// stdout) for a command that shows none.
func planShowOf(kctx *kong.Context) planShow {
	node := kctx.Selected()
	if node == nil || !node.Target.CanAddr() {
		return planShow{}
	}
	if s, ok := node.Target.Addr().Interface().(planShower); ok {
		return s.planShow()
	}
	return planShow{}
}

// newView is the view of a run with the global flags g: the one place that reads
// --log-format (jsonRequested reads it from the arguments when they do not parse).
func newView(io *IOStreams, g Globals, redact *state.Redactor, show planShow) view {
	level := slog.LevelInfo
	switch {
	case g.Quiet:
		level = slog.LevelError
	case g.Verbose:
		level = slog.LevelDebug
	}
	base := viewBase{io: io, redact: redact, show: show, noColor: g.NoColor, verbose: g.Verbose}
	if g.LogFormat == "json" {
		base.log = newJSONLogger(io.ErrOut, level, redact)
		return &jsonView{base}
	}
	base.log = newTextLogger(io.ErrOut, level, redact)
	return &textView{base}
}

// viewBase is what both views hold.
type viewBase struct {
	io      *IOStreams
	log     *slog.Logger
	redact  *state.Redactor
	show    planShow
	noColor bool // --no-color
	verbose bool // --verbose: each skipped action was logged
}

func (v *viewBase) Log() *slog.Logger { return v.log }

// planOut is where the plan goes.
func (v *viewBase) planOut() io.Writer {
	if v.show.toStderr {
		return v.io.ErrOut
	}
	return v.io.Out
}

// renderPlan writes p to w in the format of -o. Every view passes through the run's
// redactor: a remote value or a declared one may hold a secret.
func (v *viewBase) renderPlan(w io.Writer, p *plan.Plan) error {
	var b bytes.Buffer
	var err error
	switch v.show.format {
	case "json":
		err = plan.RenderJSON(&b, p)
	case "markdown":
		err = plan.RenderMarkdownWith(&b, p, v.show.markdown)
	default:
		err = plan.RenderText(&b, p, plan.TextOptions{Color: w == v.io.Out && v.io.ColorOut(v.noColor)})
	}
	if err != nil {
		return err
	}
	_, err = w.Write(v.redact.Bytes(b.Bytes()))
	return err
}

// skippedByReason counts the skipped actions of r by reason, the reasons in the order
// first met.
func skippedByReason(r *apply.Report) (reasons []string, skipped map[string]int) {
	skipped = map[string]int{}
	for _, res := range r.Results {
		if res.Status == apply.StatusSkipped {
			if skipped[res.Error] == 0 {
				reasons = append(reasons, res.Error)
			}
			skipped[res.Error]++
		}
	}
	return reasons, skipped
}

// applyOutcome is the word an apply ends with.
func applyOutcome(r *apply.Report) string {
	if r.Interrupted {
		return "interrupted"
	}
	return "complete"
}

// shownError sorts a command's error for both views: nothing to show (no error, or
// an exit code whose reason the plan already gave), or the message of the final error
// line, with the configuration problems before it, if any.
func shownError(err error) (cerrs config.Errors, msg string, ok bool) {
	if err == nil {
		return nil, "", false
	}
	var ce *codedError
	if errors.As(err, &ce) && ce.err == nil {
		return nil, "", false
	}
	if errors.As(err, &cerrs) {
		return cerrs, plan.Count(len(cerrs), "problem", "problems") + " in the configuration; nothing was read or changed remotely", true
	}
	return nil, err.Error(), true
}
