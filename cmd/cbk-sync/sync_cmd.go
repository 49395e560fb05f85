package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ApplyFlags are the flags of the commands that write.
type ApplyFlags struct {
	SecretsOut string `name:"secrets-out" placeholder:"FILE|-" help:"Where created token secrets go: a JSON-lines file (mode 0600, appended to) or - for stdout (the plan then goes to stderr)."`
	Report     string `name:"report" type:"path" placeholder:"FILE" help:"Write a JSON report of the run: each action ok/failed/skipped, totals, API calls, retries, duration."`
}

// SyncCmd plans and applies.
type SyncCmd struct {
	ConfigFlags
	APIFlags
	PlanFlags
	ApplyFlags
	DryRun bool `name:"dry-run" help:"Only plan: the same as 'cbk-sync plan'."`
	Yes    bool `short:"y" help:"Apply without asking (required when there is no terminal)."`
}

// Run plans, shows the plan, and applies it after the safety checks and confirmation.
func (c *SyncCmd) Run(ctx context.Context, env *Env) error {
	d, err := c.load(env)
	if err != nil {
		return err
	}
	s, err := c.open(env, !c.DryRun)
	if err != nil {
		return err
	}
	defer s.close()
	po := c.options()
	p, err := computePlan(ctx, env, s, d, po)
	if err != nil {
		return err
	}
	if err := showPlan(env, c.planWriter(env), p, c.Output); err != nil {
		return err
	}
	if c.DryRun {
		return planOutcome(p, c.DetailedExitcode)
	}
	if !p.Safety.Safe {
		return unsafef("refusing to apply an unsafe plan (see above); nothing was changed")
	}
	if p.Empty() {
		return nil
	}
	if err := c.checkSink(p); err != nil {
		return err
	}
	if !c.Yes {
		if !env.IO.CanPrompt() {
			return fmt.Errorf("refusing to apply without confirmation: there is no terminal to ask on; review the plan and pass --yes")
		}
		ok, err := env.IO.Confirm("Do you want to apply these changes?")
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("apply cancelled; nothing was changed")
		}
	}
	return runApply(ctx, env, s, p, c.ApplyFlags, c.Parallelism, &d, po)
}

// needsSink reports whether applying p creates token secrets.
func needsSink(p *plan.Plan) bool {
	sum := p.Summary()
	return sum.TokenCreate+sum.TokenRotate > 0
}

// planWriter is where the plan is shown: stdout, unless the secrets go there.
func (f *ApplyFlags) planWriter(env *Env) io.Writer {
	if f.SecretsOut == "-" {
		return env.IO.ErrOut
	}
	return env.IO.Out
}

func (f *ApplyFlags) checkSink(p *plan.Plan) error {
	if needsSink(p) && f.SecretsOut == "" {
		return fmt.Errorf("the plan creates tokens but no --secrets-out is given: their secrets are shown only once; pass --secrets-out FILE (or - for stdout); nothing was changed")
	}
	return nil
}

// runApply applies p with the writing client, writes the report, and maps the outcome
// to an exit status: 3 when anything failed, was skipped or was interrupted. d and po
// are what p was computed from, for re-planning a user that turns out to exist; d may
// be nil (see apply.Options.Desired).
func runApply(ctx context.Context, env *Env, s *session, p *plan.Plan, f ApplyFlags, parallelism int, d *state.Desired, po plan.Options) error {
	opts := apply.Options{Owner: p.Owner, Parallelism: parallelism, Logger: env.Log, Desired: d, PlanOptions: po}
	if needsSink(p) {
		sink, err := apply.OpenSecretsFile(f.SecretsOut, env.IO.Out)
		if err != nil {
			return fmt.Errorf("--secrets-out: %w", err)
		}
		defer sink.Close()
		opts.Secrets = sink
	}
	bar := newProgress(env, "applying")
	opts.Progress = func(done, total int) { bar.set(done, total) }
	report, err := apply.Run(ctx, s.writer, p, opts)
	bar.done()
	if err != nil {
		return err
	}
	if err := s.save(); err != nil {
		return err
	}
	report.APICalls, report.Retries = s.stats()
	st := s.reader.Stats()
	report.Polls = apply.Polls{Sent: st.Polls, Rejected: st.PollRejections, WaitMS: st.PollWait.Milliseconds(), Budget: st.PollBudget}
	if f.Report != "" {
		b, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(f.Report, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	printApplySummary(env.IO.ErrOut, report)
	if report.Failed() {
		return withCode(exitPartial, nil)
	}
	return nil
}

func printApplySummary(w io.Writer, r *apply.Report) {
	for _, res := range r.Results {
		if res.Status == "ok" {
			continue
		}
		what := res.Email
		if res.TokenName != "" {
			what += " token " + res.TokenName
		}
		fmt.Fprintf(w, "%s %s %s: %s\n", res.Status, res.Action, plan.Printable(what), plan.Printable(res.Error))
	}
	msg := "Apply complete"
	if r.Interrupted {
		msg = "Apply interrupted"
	}
	fmt.Fprintf(w, "%s: %d ok, %d failed, %d skipped.\n", msg, r.Totals.OK, r.Totals.Failed, r.Totals.Skipped)
}

// ApplyCmd applies a saved plan exactly, or nothing.
type ApplyCmd struct {
	PlanFile string `arg:"" type:"existingfile" name:"FILE" help:"Plan saved with 'cbk-sync plan --out FILE'."`
	APIFlags
	ApplyFlags
	Output string `short:"o" enum:"text,json,markdown" default:"text" help:"Format of the plan shown before applying."`
}

// Run re-reads every remote object the plan depends on and applies it only if none
// changed. Applying a saved plan is its approval: it does not ask again.
func (c *ApplyCmd) Run(ctx context.Context, env *Env) error {
	p, err := readSavedPlan(c.PlanFile)
	if err != nil {
		return err
	}
	if !p.Safety.Safe {
		return unsafef("the saved plan %s is unsafe; compute a new one", c.PlanFile)
	}
	if err := c.checkSink(p); err != nil {
		return err
	}
	s, err := c.open(env, true)
	if err != nil {
		return err
	}
	defer s.close()
	tokenUsers := make(map[string]bool, len(p.TokenUsers))
	for _, id := range p.TokenUsers {
		tokenUsers[id] = true
	}
	actual, err := s.reader.ReadActual(ctx, func(u state.User) bool { return tokenUsers[u.ID] })
	if err != nil {
		return fmt.Errorf("reading the remote state: %w", err)
	}
	if fp := plan.Fingerprint(actual); fp != p.Fingerprint {
		return unsafef("the remote state changed since %s was saved; nothing was applied: run 'cbk-sync plan --out' again and review it", c.PlanFile)
	}
	if err := showPlan(env, c.planWriter(env), p, c.Output); err != nil {
		return err
	}
	if p.Empty() {
		return nil
	}
	return runApply(ctx, env, s, p, c.ApplyFlags, c.Parallelism, nil, plan.Options{})
}

func readSavedPlan(path string) (*plan.Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := plan.ReadSaved(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
