package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
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

// planToStderr reports whether the plan is shown on stderr: when the secrets or the
// report go to stdout. On stderr under --log-format json the plan is one log record
// (jsonView.Plan).
func (f *ApplyFlags) planToStderr() bool {
	return f.SecretsOut == "-" || f.Report == "-"
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

// ApplyCmd applies a saved plan exactly, or nothing.
type ApplyCmd struct {
	PlanFile string `arg:"" type:"existingfile" name:"FILE" help:"Plan saved with 'cbk-sync plan --out FILE'."`
	APIFlags
	ApplyFlags
	MetricsFlags
	IDsFlags
	Output string `short:"o" enum:"text,json,markdown" default:"text" help:"Format of the plan shown before applying."`
}

// Validate refuses lock flags that contradict each other.
func (c *ApplyCmd) Validate() error { return c.ApplyFlags.validateLock() }

// planShow shows the plan as -o says, on stderr when stdout carries the secrets or
// the report.
func (c *ApplyCmd) planShow() planShow {
	return planShow{format: c.Output, toStderr: c.ApplyFlags.planToStderr()}
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
	p, err := c.lockedPlan(ctx, env, s, saved, sink, nil)
	if err != nil {
		return savedRefusal(c.PlanFile, err)
	}
	defer func() { err = c.writeIDsAfter(env, p, err) }()
	if err := env.view.Plan(p); err != nil {
		return err
	}
	if p.Empty() {
		return nil
	}
	// A user found to exist after all (409) is planned again from the saved desired
	// state, which holds every user the plan concerns.
	return lockLost(ctx, runApply(ctx, env, applyRun{session: s, plan: p, flags: c.ApplyFlags, sink: sink, parallelism: c.Parallelism, desired: &saved.Desired, planOptions: saved.Options}))
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
