package main

import (
	"errors"

	"github.com/cbk-sync/cbk-sync/internal/plan"
)

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

// planShow shows the plan on stdout as -o says.
func (c *ShowCmd) planShow() planShow {
	return planShow{format: c.Output, markdown: plan.MarkdownOptions{MaxBytes: c.MaxBytes, FullPlanURL: c.FullPlanURL}}
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
	if err := env.view.Plan(p); err != nil {
		return err
	}
	return planOutcome(p, false)
}
