package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// PlanFlags shape how a plan is computed and shown.
type PlanFlags struct {
	Output           string `short:"o" enum:"text,json,markdown" default:"text" help:"Plan format: text, json or markdown."`
	DetailedExitcode bool   `name:"detailed-exitcode" help:"Exit 2 when changes are pending (0 when none)."`
	Takeover         bool   `help:"Adopt declared users that another owner manages, instead of refusing."`
	MaxDeletes       int    `name:"max-deletes" default:"10" help:"Refuse a plan that deletes more users than this."`
	MaxDeletePercent int    `name:"max-delete-percent" default:"25" help:"Refuse a plan that deletes more than this percentage of owned users (checked from 10 owned)."`
	ForceDeletes     bool   `name:"force-deletes" help:"Lift the delete caps for this run."`
	MaxUpdates       int    `name:"max-updates" default:"-1" help:"Refuse a plan that updates more users than this (-1 = no absolute cap)."`
	MaxUpdatePercent int    `name:"max-update-percent" default:"30" help:"Refuse a plan that updates more than this percentage of owned users (checked from 10 owned)."`
	ForceUpdates     bool   `name:"force-updates" help:"Lift the update caps for this run."`
	// The token revocation caps: a revoked token cuts off what uses it, as a deleted user does.
	MaxTokenRevokes       int    `name:"max-token-revokes" default:"20" help:"Refuse a plan that revokes more tokens than this (a pending token, whose secret nobody has, is not counted)."`
	MaxTokenRevokePercent int    `name:"max-token-revoke-percent" default:"25" help:"Refuse a plan that revokes more than this percentage of the owned tokens it read (checked from 40 owned tokens)."`
	ForceTokenRevokes     bool   `name:"force-token-revokes" help:"Lift the token revocation caps for this run."`
	MaxBytes              int    `name:"max-bytes" placeholder:"N" help:"With -o markdown: cut the plan at a user boundary to at most N bytes, with a note of what was left out (GitHub comments hold 65536 characters)."`
	FullPlanURL           string `name:"full-plan-url" placeholder:"URL" help:"With --max-bytes: where the note says the full plan is (e.g. the CI run with the plan artifact)."`
}

func (f *PlanFlags) options() plan.Options {
	o := plan.DefaultOptions(time.Now())
	o.Takeover = f.Takeover
	o.MaxDeletes = f.MaxDeletes
	o.MaxDeletePercent = f.MaxDeletePercent
	o.ForceDeletes = f.ForceDeletes
	o.MaxUpdates = f.MaxUpdates
	o.MaxUpdatePercent = f.MaxUpdatePercent
	o.ForceUpdates = f.ForceUpdates
	o.MaxTokenRevokes = f.MaxTokenRevokes
	o.MaxTokenRevokePercent = f.MaxTokenRevokePercent
	o.ForceTokenRevokes = f.ForceTokenRevokes
	return o
}

// planShow shows the plan on stdout as -o says.
func (f *PlanFlags) planShow() planShow {
	return planShow{format: f.Output, markdown: plan.MarkdownOptions{MaxBytes: f.MaxBytes, FullPlanURL: f.FullPlanURL}}
}

// Validate checks flag values.
func (f *PlanFlags) Validate() error {
	if f.MaxDeletes < 0 {
		return fmt.Errorf("--max-deletes must be 0 or more (got %d)", f.MaxDeletes)
	}
	if f.MaxUpdates < -1 {
		return fmt.Errorf("--max-updates must be -1 (no cap), 0 or more (got %d)", f.MaxUpdates)
	}
	if f.MaxUpdatePercent < 0 || f.MaxUpdatePercent > 100 {
		return fmt.Errorf("--max-update-percent must be between 0 and 100 (got %d)", f.MaxUpdatePercent)
	}
	if f.MaxTokenRevokes < 0 {
		return fmt.Errorf("--max-token-revokes must be 0 or more (got %d)", f.MaxTokenRevokes)
	}
	if f.MaxTokenRevokePercent < 0 || f.MaxTokenRevokePercent > 100 {
		return fmt.Errorf("--max-token-revoke-percent must be between 0 and 100 (got %d)", f.MaxTokenRevokePercent)
	}
	if f.MaxDeletePercent < 0 || f.MaxDeletePercent > 100 {
		return fmt.Errorf("--max-delete-percent must be between 0 and 100 (got %d)", f.MaxDeletePercent)
	}
	return checkMarkdownCap(f.Output, f.MaxBytes, f.FullPlanURL)
}

// checkMarkdownCap checks --max-bytes and --full-plan-url against -o.
func checkMarkdownCap(output string, maxBytes int, fullPlanURL string) error {
	if maxBytes < 0 {
		return fmt.Errorf("--max-bytes must be 0 (no cap) or more (got %d)", maxBytes)
	}
	if maxBytes > 0 && output != "markdown" {
		return fmt.Errorf("--max-bytes applies to -o markdown only (got -o %s)", output)
	}
	if fullPlanURL != "" && maxBytes == 0 {
		return fmt.Errorf("--full-plan-url is shown only in the note of a plan cut by --max-bytes; add --max-bytes N")
	}
	return nil
}

// PlanCmd shows what sync would change.
type PlanCmd struct {
	ConfigFlags
	APIFlags
	PlanFlags
	MetricsFlags
	IDsFlags
	Out string `name:"out" type:"path" placeholder:"FILE" help:"Also save the plan to FILE for 'cbk-sync apply FILE'."`
	// Base is the configuration before the change under review (a PR's base branch).
	Base []string `name:"base" placeholder:"PATH" help:"Configuration before the change (file or directory; repeatable): read token lists only for users whose declared tokens the change adds or alters. The plan says how many users' tokens it did not check."`
}

// Run computes and shows the plan; it never writes remotely.
func (c *PlanCmd) Run(ctx context.Context, env *Env) error {
	d, err := c.load(ctx, env)
	if err != nil {
		return err
	}
	var need map[string]bool // nil: every token list
	if len(c.Base) > 0 {
		for _, b := range c.Base {
			if _, err := os.Stat(b); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("--base %s does not exist: the base has no configuration there yet (say, on the pull request "+
					"that adds it); leave --base out for a full plan", b)
			}
		}
		base, err := loadInterruptible(ctx, "--base", func() (state.Desired, error) { return config.LoadEnv(c.Base, env.configEnv()) })
		if err != nil {
			return fmt.Errorf("--base: %w", err)
		}
		need = plan.TokenListsNeeded(base, d)
	}
	inputs := append(c.inputs("-f", c.Files...), c.inputs("--base", c.Base...)[1:]...)
	if err := prepareOutputs([]output{{flag: "--out", path: c.Out}, c.emulatorOutput(), c.metricsOutput(), c.idsOutput()}, inputs); err != nil {
		return err
	}
	s, err := c.open(env, false)
	if err != nil {
		return err
	}
	defer s.close()
	o := c.options()
	p, actual, err := computePlan(ctx, env, s, d, o, need)
	if err != nil {
		return err
	}
	if err := env.view.Plan(p); err != nil {
		return err
	}
	if c.Out != "" {
		var buf bytes.Buffer
		if err := plan.WriteSaved(&buf, plan.NewSaved(d, actual, o, p)); err != nil {
			return err
		}
		// A saved plan names every managed user: readable by its owner only. One that
		// would hold a secret (read from the remote state) is not written at all.
		if env.redact.Contains(buf.String()) {
			return fmt.Errorf("--out %s: not saved: the plan would hold a secret (the API token, found in the remote state); remove it from the remote users, or apply with 'cbk-sync sync'", c.Out)
		}
		if err := atomicfile.Write(c.Out, buf.Bytes(), 0o600); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		env.Log.Info("plan saved", "file", c.Out)
	}
	if err := c.writeIDs(env, p, nil); err != nil {
		return err
	}
	return planOutcome(p, c.DetailedExitcode)
}

// computePlan reads the remote state the desired state needs, with the fewest calls,
// and computes the plan; it returns the remote state too, for a saved plan. A non-nil
// need limits the token lists read to the users it holds (by identity key); the plan then
// counts the others as not checked.
func computePlan(ctx context.Context, env *Env, s *session, d state.Desired, o plan.Options, need map[string]bool) (*plan.Plan, state.Actual, error) {
	// Aliases are write-only: the declared alias of each existing user is looked up
	// with one fetch (not a poll), so that a missing or moved alias is planned.
	reads := plan.ToRead(d, need)
	progress := newProgress(env, "reading")
	progress.showPolls(s.reader.PollStatus)
	actual, err := s.reader.ReadWithAliases(ctx, func(u state.User) bool {
		progress.add(1)
		return reads.Tokens(u)
	}, func(users []state.User) []string {
		progress.done() // the listing is over; the alias fetches are not polls
		return reads.Aliases(users)
	})
	progress.done()
	if err != nil {
		return nil, state.Actual{}, fmt.Errorf("reading the remote state: %w", err)
	}
	compute := plan.Compute
	if need != nil {
		compute = plan.ComputePartial
	}
	p, err := compute(d, actual, o)
	if ids, ok := plan.ReleasesTokens(err); ok {
		// prune.users: release: the released users' owned tokens are released too, so
		// their token lists are read (one poll each), once, and the plan computed again.
		more, rerr := s.reader.ReadObjects(ctx, nil, ids, false)
		if rerr != nil {
			return nil, state.Actual{}, fmt.Errorf("reading the remote state: %w", rerr)
		}
		for _, id := range ids {
			// A user deleted meanwhile has no list: its release then meets 404.
			actual.Tokens[id] = append([]state.Token{}, more.Tokens[id]...)
		}
		p, err = compute(d, actual, o)
	}
	if err != nil {
		return nil, state.Actual{}, err
	}
	st := s.reader.Stats()
	p.ReadCost = &plan.ReadCost{Polls: st.Polls, Rejected: st.PollRejections, WaitMS: st.PollWait.Milliseconds(), PollBudget: st.PollBudget}
	env.facts.plan = &p
	return &p, actual, nil
}

// planOutcome maps a shown plan to its exit status: 4 unsafe, 2 pending (with
// --detailed-exitcode), else 0. The plan already said why, so nothing more is printed.
func planOutcome(p *plan.Plan, detailed bool) error {
	switch {
	case !p.Safety.Safe:
		return withCode(exitUnsafe, nil)
	case detailed && !p.Empty():
		return withCode(exitPending, nil)
	}
	return nil
}
