package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// applyRun is what applying a plan takes, for sync and apply alike.
type applyRun struct {
	session     *session
	plan        *plan.Plan
	flags       ApplyFlags
	sink        *secretsSink // nil: none given
	parallelism int
	// desired and planOptions are what plan was computed from, for re-planning a user
	// that turns out to exist; desired may be nil (see apply.Options.Desired).
	desired     *state.Desired
	planOptions plan.Options
}

// runApply applies r.plan with the writing client, writes the report, and maps the
// outcome to an exit status: 3 when anything failed, was skipped or was interrupted.
func runApply(ctx context.Context, env *Env, r applyRun) error {
	s, p, f, sink := r.session, r.plan, r.flags, r.sink
	env.interrupt.writing()
	opts := apply.Options{Owner: p.Owner, Parallelism: r.parallelism, Logger: env.Log, Desired: r.desired, PlanOptions: r.planOptions, Unlocked: s.unlocked}
	calls, cancelCalls := context.WithCancel(env.abort)
	defer cancelCalls()
	// The age and exec sinks are ready already; the file (or stdout) is opened only for
	// a plan that creates tokens, as before.
	if sink != nil && (sink.sink != nil || needsSink(p)) {
		secrets, closeSink, err := sink.open(calls, env, f.SecretsOut)
		if err != nil {
			return err
		}
		defer func() {
			// Every record was synced before its token was confirmed: a failed close
			// loses nothing, but is worth a line.
			if err := closeSink(); err != nil {
				env.Log.Warn("closing the secrets sink failed", "error", err)
			}
		}()
		opts.Secrets = secrets
	}
	bar := newProgress(env, "applying")
	opts.Progress = func(done, total int) { bar.set(done, total) }
	opts.Calls = calls
	// The first interrupt stops new actions (ctx); the calls in flight get a short
	// grace period, then are cancelled, as they are at once by a second interrupt.
	stopGrace := context.AfterFunc(ctx, func() {
		env.Log.Warn("interrupted: starting nothing new; interrupt again to cancel the calls in flight now",
			"grace_period", env.Globals.InterruptGrace)
		time.AfterFunc(env.Globals.InterruptGrace, cancelCalls)
	})
	defer stopGrace()
	report, err := apply.Run(ctx, s.writer, p, opts)
	bar.done()
	env.facts.report = report
	if err != nil {
		return err
	}
	// From here on writes were made (or may have been): any failure exits 3, never 1
	// ("nothing applied").
	saveErr := s.save()
	report.APICalls, report.Retries = s.stats()
	st := s.reader.Stats()
	report.Polls = apply.Polls{Sent: st.Polls, Rejected: st.PollRejections, WaitMS: st.PollWait.Milliseconds(), Budget: st.PollBudget}
	report.SecretsTo = p.SecretsTo
	report.Account = p.Account
	report.ToolVersion = buildVersion()
	report.ExitCode = exitOK
	if report.Failed() || saveErr != nil {
		report.ExitCode = exitPartial
	}
	if err := writeReport(env, f.Report, report); err != nil {
		report.ExitCode = exitPartial
		env.view.ApplySummary(report)
		return withCode(exitPartial, fmt.Errorf("--report %s: the changes above were made but the report could not be written: %w", f.Report, err))
	}
	env.view.ApplySummary(report)
	if saveErr != nil {
		return withCode(exitPartial, saveErr)
	}
	if report.ExitCode != exitOK {
		return withCode(report.ExitCode, nil)
	}
	return nil
}

// writeReport writes the report to path: indented JSON in a 0600 file, or with "-"
// one compact line on stdout for a pipe. No path, no report.
func writeReport(env *Env, path string, r *apply.Report) error {
	switch path {
	case "":
		return nil
	case "-":
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = env.IO.Out.Write(append(env.redact.Bytes(b), '\n'))
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(env.redact.Bytes(b), '\n'), 0o600)
}
