package main

import (
	"context"
	"fmt"

	"github.com/cbk-sync/cbk-sync/internal/plan"
)

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

// planShow shows the plan as -o says, on stderr when stdout carries the secrets or
// the report.
func (c *SyncCmd) planShow() planShow {
	s := c.PlanFlags.planShow()
	s.toStderr = c.ApplyFlags.planToStderr()
	return s
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
	if err := env.view.Plan(p); err != nil {
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
	})
	if err != nil || lp == nil {
		return err
	}
	p = lp
	return lockLost(ctx, runApply(ctx, env, applyRun{session: s, plan: p, flags: c.ApplyFlags, sink: sink, parallelism: c.Parallelism, desired: &d, planOptions: po}))
}
