package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ApplyFlags are the flags of the commands that write.
type ApplyFlags struct {
	SecretsOut         string        `name:"secrets-out" placeholder:"FILE|-|age:DIR" help:"Where created token secrets go: a JSON-lines file (mode 0600, appended to), - for stdout (the plan then goes to stderr), or age:DIR for one age-encrypted file per secret, DIR/<email or user id>/<token-name>.age."`
	AgeRecipients      []string      `name:"age-recipient" sep:"none" placeholder:"RECIPIENT" help:"With --secrets-out age:DIR: encrypt to this age (age1...) or SSH (ssh-ed25519 ...) public key. Repeatable."`
	AgeRecipientsFiles []string      `name:"age-recipients-file" sep:"none" placeholder:"FILE" help:"With --secrets-out age:DIR: encrypt to every recipient in FILE, one per line, # comments (as age -R takes it). Repeatable."`
	SecretsExec        string        `name:"secrets-exec" placeholder:"'CMD ARGS'" help:"Hand each secret to a command instead: it runs once per secret with the JSON record on stdin (never in argv or the environment); exit 0 means delivered, anything else revokes the token. Split into words like a shell would, without one; $CBK_SYNC_EMAIL, $CBK_SYNC_USER_ID, $CBK_SYNC_TOKEN_NAME, $CBK_SYNC_TOKEN_ID are expanded and set."`
	SecretsExecTimeout time.Duration `name:"secrets-exec-timeout" default:"1m" help:"Kill a --secrets-exec command that runs longer than this; the delivery fails."`
	Report             string        `name:"report" placeholder:"FILE|-" help:"Write a JSON report of the run (mode 0600): each action ok/failed/skipped, totals, API calls, retries, duration, exit code; - writes it as one line to stdout (the plan then goes to stderr)."`
	// LockTimeout and NoLock govern the account lock every writing run takes.
	LockTimeout time.Duration `name:"lock-timeout" default:"0s" help:"How long to wait for another run's lock on the account before giving up (exit 5); 0 gives up at once."`
	NoLock      bool          `name:"no-lock" help:"Do not take the account lock (only when no other run can start meanwhile, e.g. an account at its user quota)."`
	// LockTTL is the lease's lifetime; hidden, for tests in which a killed run's lease
	// must expire quickly.
	LockTTL time.Duration `name:"lock-ttl" hidden:"" default:"2m"`
}

// validateLock refuses lock flags that contradict each other.
func (f *ApplyFlags) validateLock() error {
	if f.NoLock && f.LockTimeout != 0 {
		return fmt.Errorf("--lock-timeout with --no-lock: no lock is taken, so there is nothing to wait for; drop one of them")
	}
	return nil
}

// Validate refuses lock flags that contradict each other.
func (c *ApplyCmd) Validate() error { return c.ApplyFlags.validateLock() }

// SyncCmd plans and applies.
type SyncCmd struct {
	ConfigFlags
	APIFlags
	PlanFlags
	ApplyFlags
	MetricsFlags
	IDsFlags
	DryRun bool `name:"dry-run" help:"Only plan: the same as 'cbk-sync plan'."`
	Yes    bool `short:"y" help:"Apply without asking (required when there is no terminal)."`
}

// Validate refuses flags that --dry-run would silently ignore.
func (c *SyncCmd) Validate() error {
	if err := c.ApplyFlags.validateLock(); err != nil {
		return err
	}
	if !c.DryRun {
		if c.DetailedExitcode {
			return fmt.Errorf("--detailed-exitcode without --dry-run: it sets the exit code of a plan that is only shown, and sync applies its plan (exit 0, 3 or 4), so it would do nothing; drop it, or add --dry-run")
		}
		return nil
	}
	for _, f := range []struct {
		set  bool
		flag string
	}{
		{c.Yes, "--yes"}, {c.SecretsOut != "", "--secrets-out"}, {c.SecretsExec != "", "--secrets-exec"},
		{c.Report != "", "--report"}, {len(c.AgeRecipients)+len(c.AgeRecipientsFiles) > 0, "--age-recipient"},
		{c.NoLock, "--no-lock"}, {c.LockTimeout != 0, "--lock-timeout"},
	} {
		if f.set {
			return fmt.Errorf("--dry-run with %s: a dry run applies nothing, so %s would do nothing; drop one of them (the plan itself: 'cbk-sync plan -o json')", f.flag, f.flag)
		}
	}
	return nil
}

// Run plans, shows the plan, and applies it after the safety checks and confirmation.
func (c *SyncCmd) Run(ctx context.Context, env *Env) (err error) {
	d, err := c.load(ctx, env)
	if err != nil {
		return err
	}
	if err := prepareOutputs(append(c.ApplyFlags.outputs(), c.emulatorOutput(), c.metricsOutput(), c.idsOutput()), c.inputs("-f", c.Files...)); err != nil {
		return err
	}
	var sink *secretsSink
	if !c.DryRun {
		if sink, err = c.prepareSink(env); err != nil {
			return err
		}
	}
	s, err := c.open(env, !c.DryRun)
	if err != nil {
		return err
	}
	defer s.close()
	// The plan is computed, shown and approved without the lock: a run with nothing
	// to do, or refused (caps, sink, prompt), writes nothing at all (lockedPlan).
	po := c.options()
	p, actual, err := computePlan(ctx, env, s, d, po, nil)
	if err != nil {
		return err
	}
	defer func() { err = c.writeIDsAfter(env, p, err) }()
	p.SecretsTo = sink.destinationFor(p)
	if err := showPlan(env, c.planWriter(env), p, c.Output, c.markdownOptions()); err != nil {
		return err
	}
	if c.DryRun {
		return planOutcome(p, c.DetailedExitcode)
	}
	if err := c.approve(ctx, env, p, sink, c.Yes); err != nil {
		return err
	}
	if p.Empty() {
		c.sweepLease(ctx, env, s, d.Owner, actual)
		return nil
	}
	lctx, release, err := c.lockAccount(ctx, env, s, d.Owner, p)
	if err != nil {
		return err
	}
	defer release()
	ctx = lctx
	lp, err := c.lockedPlan(ctx, env, s, plan.NewSaved(d, actual, po, p), sink, func() (*plan.Plan, error) {
		np, _, err := computePlan(ctx, env, s, d, po, nil)
		return np, err
	}, func(np *plan.Plan) error { return showPlan(env, c.planWriter(env), np, c.Output, c.markdownOptions()) })
	if err != nil || lp == nil {
		return err
	}
	p = lp
	return lockLost(ctx, runApply(ctx, env, s, p, c.ApplyFlags, sink, c.Parallelism, &d, po))
}

// approve refuses a plan that may not be applied (unsafe, no sink for its secrets) and,
// unless yes, asks for confirmation. An empty plan needs none.
func (f *ApplyFlags) approve(ctx context.Context, env *Env, p *plan.Plan, sink *secretsSink, yes bool) error {
	if !p.Safety.Safe {
		return unsafef("refusing to apply an unsafe plan (see above); nothing was changed")
	}
	if p.Empty() {
		return nil
	}
	if err := checkSink(p, sink); err != nil {
		return err
	}
	if yes {
		return nil
	}
	if !env.IO.CanPrompt() {
		return fmt.Errorf("refusing to apply without confirmation: there is no terminal to ask on; review the plan and pass --yes")
	}
	ok, err := env.IO.Confirm(ctx, "Do you want to apply these changes?")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("apply cancelled; nothing was changed")
	}
	return nil
}

// needsSink reports whether applying p creates token secrets.
func needsSink(p *plan.Plan) bool {
	sum := p.Summary()
	return sum.TokenCreate+sum.TokenRotate > 0
}

// planWriter is where the plan is shown: stdout, unless the secrets or the report
// go there. On stderr under --log-format json the plan is one log record (see
// showPlan).
func (f *ApplyFlags) planWriter(env *Env) io.Writer {
	if f.SecretsOut == "-" || f.Report == "-" {
		return env.IO.ErrOut
	}
	return env.IO.Out
}

// outputs are the files an apply writes: the secrets file (not an age directory or a
// command, which their sinks check) and the report.
func (f *ApplyFlags) outputs() []output {
	var outs []output
	if !strings.HasPrefix(f.SecretsOut, agePrefix) {
		outs = append(outs, output{flag: "--secrets-out", path: f.SecretsOut, secrets: true})
	}
	return append(outs, output{flag: "--report", path: f.Report})
}

func checkSink(p *plan.Plan, sink *secretsSink) error {
	if needsSink(p) && sink == nil {
		return fmt.Errorf("the plan creates tokens but no --secrets-out is given: their secrets are shown only once; pass --secrets-out FILE (or - for stdout, or age:DIR with --age-recipient) or --secrets-exec 'CMD'; nothing was changed")
	}
	return nil
}

// destinationFor is what the plan p says about where its secrets go: the destination,
// when p creates tokens and one was given.
func (s *secretsSink) destinationFor(p *plan.Plan) *plan.SecretsDestination {
	if s == nil || !needsSink(p) {
		return nil
	}
	d := s.dest
	return &d
}

// runApply applies p with the writing client, writes the report, and maps the outcome
// to an exit status: 3 when anything failed, was skipped or was interrupted. d and po
// are what p was computed from, for re-planning a user that turns out to exist; d may
// be nil (see apply.Options.Desired).
func runApply(ctx context.Context, env *Env, s *session, p *plan.Plan, f ApplyFlags, sink *secretsSink, parallelism int, d *state.Desired, po plan.Options) error {
	env.interrupt.writing()
	opts := apply.Options{Owner: p.Owner, Parallelism: parallelism, Logger: env.Log, Desired: d, PlanOptions: po, Unlocked: s.unlocked}
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
		summarizeApply(env, report)
		return withCode(exitPartial, fmt.Errorf("--report %s: the changes above were made but the report could not be written: %w", f.Report, err))
	}
	summarizeApply(env, report)
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

// summarizeApply ends an apply on stderr, as text or, with --log-format json, as log
// records: "not started" (count, reason) per reason of the skipped actions, then
// "apply complete" or "apply interrupted" (ok, failed, skipped, exit_code). The
// failures were logged as they happened.
func summarizeApply(env *Env, r *apply.Report) {
	if env.Globals.LogFormat != "json" {
		printApplySummary(env.IO.ErrOut, r, env.Globals.Verbose)
		return
	}
	if !env.Globals.Verbose { // with --verbose, each skip was logged
		var reasons []string
		skipped := map[string]int{}
		for _, res := range r.Results {
			if res.Status == apply.StatusSkipped {
				if skipped[res.Error] == 0 {
					reasons = append(reasons, res.Error)
				}
				skipped[res.Error]++
			}
		}
		for _, reason := range reasons {
			env.Log.Warn("not started", "count", skipped[reason], "reason", reason)
		}
	}
	msg := "apply complete"
	if r.Interrupted {
		msg = "apply interrupted"
	}
	env.Log.Info(msg, "ok", r.Totals.OK, "failed", r.Totals.Failed, "skipped", r.Totals.Skipped, "exit_code", r.ExitCode)
}

// printApplySummary ends an apply on stderr: each failure on its own line, the
// skipped actions counted by reason in one line each (each of them only with
// --verbose: an interrupted run may skip thousands), then the totals.
func printApplySummary(w io.Writer, r *apply.Report, verbose bool) {
	var reasons []string
	skipped := map[string]int{}
	for _, res := range r.Results {
		if res.Status == apply.StatusOK {
			continue
		}
		if res.Status == apply.StatusSkipped && !verbose {
			if skipped[res.Error] == 0 {
				reasons = append(reasons, res.Error)
			}
			skipped[res.Error]++
			continue
		}
		what := res.Email
		if res.TokenName != "" {
			what += " token " + res.TokenName
		}
		fmt.Fprintf(w, "%s %s %s: %s\n", res.Status, res.Action, plan.Printable(what), plan.Printable(res.Error))
	}
	for _, reason := range reasons {
		fmt.Fprintf(w, "%s %s: %s (each is in the report and with --verbose)\n", count(skipped[reason], "action", "actions"), "skipped", plan.Printable(reason))
	}
	msg := "Apply complete"
	if r.Interrupted {
		msg = "Apply interrupted"
	}
	fmt.Fprintf(w, "%s: %d ok, %d failed, %d skipped.\n", msg, r.Totals.OK, r.Totals.Failed, r.Totals.Skipped)
}

// count is n with the singular or plural noun.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// ApplyCmd applies a saved plan exactly, or nothing.
type ApplyCmd struct {
	PlanFile string `arg:"" type:"existingfile" name:"FILE" help:"Plan saved with 'cbk-sync plan --out FILE'."`
	APIFlags
	ApplyFlags
	MetricsFlags
	IDsFlags
	Output string `short:"o" enum:"text,json,markdown" default:"text" help:"Format of the plan shown before applying."`
}

// Run computes the saved plan again from the desired state saved with it and a fresh
// read of the remote objects its changes depend on, and applies that plan only if it
// equals the saved one and is safe. Applying a saved plan is its approval: it does not
// ask again.
func (c *ApplyCmd) Run(ctx context.Context, env *Env) (err error) {
	if err := prepareOutputs(append(c.ApplyFlags.outputs(), c.emulatorOutput(), c.metricsOutput(), c.idsOutput()), c.inputs("the saved plan", c.PlanFile)); err != nil {
		return err
	}
	saved, err := readSavedPlan(c.PlanFile)
	if err != nil {
		return err
	}
	// Checked against itself first, with no API call: an edited file is refused
	// before anything is read or written.
	checked, err := checkSaved(c.PlanFile, saved)
	if err != nil {
		return err
	}
	sink, err := c.prepareSink(env)
	if err != nil {
		return err
	}
	if err := checkSink(checked, sink); err != nil {
		return err
	}
	s, err := c.open(env, true)
	if err != nil {
		return err
	}
	defer s.close()
	// An empty plan is verified without the lock: it writes nothing.
	if !checked.Empty() {
		lctx, release, err := c.lockAccount(ctx, env, s, saved.Desired.Owner, checked)
		if err != nil {
			return err
		}
		defer release()
		ctx = lctx
	}
	// Where the secrets go is this run's choice, never the file's (lockedPlan sets it).
	p, err := c.lockedPlan(ctx, env, s, saved, sink, nil, nil)
	if err != nil {
		return savedRefusal(c.PlanFile, err)
	}
	defer func() { err = c.writeIDsAfter(env, p, err) }()
	if err := showPlan(env, c.planWriter(env), p, c.Output, plan.MarkdownOptions{}); err != nil {
		return err
	}
	if p.Empty() {
		return nil
	}
	// A user found to exist after all (409) is planned again from the saved desired
	// state, which holds every user the plan concerns.
	return lockLost(ctx, runApply(ctx, env, s, p, c.ApplyFlags, sink, c.Parallelism, &saved.Desired, saved.Options))
}

// checkSaved computes a saved plan again from what was saved with it (Saved.Check).
func checkSaved(path string, saved *plan.Saved) (*plan.Plan, error) {
	p, err := saved.Check()
	if err != nil {
		return p, savedRefusal(path, err)
	}
	return p, nil
}

// savedRefusal maps a saved plan that may not run to exit 4, with what to do.
func savedRefusal(path string, err error) error {
	switch {
	case errors.Is(err, plan.ErrEdited):
		return unsafef("%s: %v; nothing was applied: it was edited after 'cbk-sync plan --out' wrote it; compute a new one", path, err)
	case errors.Is(err, plan.ErrStale):
		return unsafef("%s: %v; nothing was applied: run 'cbk-sync plan --out' again and review it", path, err)
	case errors.Is(err, plan.ErrUnsafe):
		return unsafef("%s: %v; nothing was applied: compute a new plan", path, err)
	}
	return err
}

func readSavedPlan(path string) (*plan.Saved, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := plan.ReadSaved(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Before anything else: the desired state must be one a configuration could give
	// (a plan recomputed with the planner from a forged desired state passes the checks
	// of the plan against itself).
	if err := config.CheckDesired(s.Desired); err != nil {
		return nil, unsafef("%s: the desired state saved with the plan breaks the rules of a configuration, so no configuration gave it; nothing was applied: %s", path, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return s, nil
}

// ShowCmd prints a saved plan for review, once it is checked.
type ShowCmd struct {
	PlanFile    string `arg:"" type:"existingfile" name:"FILE" help:"Plan saved with 'cbk-sync plan --out FILE'."`
	Output      string `short:"o" enum:"text,json,markdown" default:"text" help:"Plan format: text, json or markdown."`
	MaxBytes    int    `name:"max-bytes" placeholder:"N" help:"With -o markdown: cut the plan at a user boundary to at most N bytes, with a note of what was left out."`
	FullPlanURL string `name:"full-plan-url" placeholder:"URL" help:"With --max-bytes: where the note says the full plan is."`
}

// Validate checks the Markdown cap like plan's.
func (c *ShowCmd) Validate() error {
	return checkMarkdownCap(c.Output, c.MaxBytes, c.FullPlanURL)
}

// Run reads the file and computes its plan again from the desired state and remote
// objects saved with it (no API call), so what it prints is what 'apply FILE' runs
// while the remote objects are unchanged. An edited file is refused (exit 4); an
// unsafe plan is shown, with exit 4, as 'plan' does.
func (c *ShowCmd) Run(env *Env) error {
	saved, err := readSavedPlan(c.PlanFile)
	if err != nil {
		return err
	}
	p, err := saved.Check()
	if err != nil && !errors.Is(err, plan.ErrUnsafe) {
		return savedRefusal(c.PlanFile, err)
	}
	if err := showPlan(env, env.IO.Out, p, c.Output, plan.MarkdownOptions{MaxBytes: c.MaxBytes, FullPlanURL: c.FullPlanURL}); err != nil {
		return err
	}
	return planOutcome(p, false)
}
