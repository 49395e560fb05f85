package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ConfigFlags name the configuration files.
type ConfigFlags struct {
	Files []string `short:"f" name:"file" required:"" placeholder:"PATH" help:"Configuration file or directory (its *.yaml/*.yml); repeatable."`
}

func (f *ConfigFlags) load(env *Env) (state.Desired, error) {
	return config.Load(f.Files, env.IO.lookupEnv)
}

// PlanFlags shape how a plan is computed and shown.
type PlanFlags struct {
	Output           string `short:"o" enum:"text,json,markdown" default:"text" help:"Plan format: text, json or markdown."`
	DetailedExitcode bool   `name:"detailed-exitcode" help:"Exit 2 when changes are pending (0 when none)."`
	Takeover         bool   `help:"Adopt declared users that another owner manages, instead of refusing."`
	MaxDeletes       int    `name:"max-deletes" default:"10" help:"Refuse a plan that deletes more users than this."`
	MaxDeletePercent int    `name:"max-delete-percent" default:"25" help:"Refuse a plan that deletes more than this percentage of owned users (checked from 10 owned)."`
	ForceDeletes     bool   `name:"force-deletes" help:"Lift the delete caps for this run."`
}

func (f *PlanFlags) options() plan.Options {
	o := plan.DefaultOptions(time.Now())
	o.Takeover = f.Takeover
	o.MaxDeletes = f.MaxDeletes
	o.MaxDeletePercent = f.MaxDeletePercent
	o.ForceDeletes = f.ForceDeletes
	return o
}

// Validate checks flag values.
func (f *PlanFlags) Validate() error {
	if f.MaxDeletes < 0 {
		return fmt.Errorf("--max-deletes must be 0 or more (got %d)", f.MaxDeletes)
	}
	if f.MaxDeletePercent < 0 || f.MaxDeletePercent > 100 {
		return fmt.Errorf("--max-delete-percent must be between 0 and 100 (got %d)", f.MaxDeletePercent)
	}
	return nil
}

// ValidateCmd checks configuration files without calling the API.
type ValidateCmd struct {
	ConfigFlags
}

// Run loads the files and reports every problem.
func (c *ValidateCmd) Run(env *Env) error {
	d, err := c.load(env)
	if err != nil {
		return err
	}
	tokens := 0
	for _, u := range d.Users {
		tokens += len(u.Tokens)
	}
	fmt.Fprintf(env.IO.Out, "Configuration is valid: owner %q, %d users, %d tokens.\n", d.Owner, len(d.Users), tokens)
	return nil
}

// PlanCmd shows what sync would change.
type PlanCmd struct {
	ConfigFlags
	APIFlags
	PlanFlags
	Out string `name:"out" type:"path" placeholder:"FILE" help:"Also save the plan to FILE for 'cbk-sync apply FILE'."`
}

// Run computes and shows the plan; it never writes remotely.
func (c *PlanCmd) Run(ctx context.Context, env *Env) error {
	d, err := c.load(env)
	if err != nil {
		return err
	}
	s, err := c.open(env, false)
	if err != nil {
		return err
	}
	defer s.close()
	p, err := computePlan(ctx, env, s, d, c.options())
	if err != nil {
		return err
	}
	if err := showPlan(env, env.IO.Out, p, c.Output); err != nil {
		return err
	}
	if c.Out != "" {
		var buf bytes.Buffer
		if err := plan.WriteSaved(&buf, p); err != nil {
			return err
		}
		if err := writeFileAtomic(c.Out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		env.Log.Info("plan saved", "file", c.Out)
	}
	return planOutcome(p, c.DetailedExitcode)
}

// computePlan reads the remote state the desired state needs, with the fewest calls,
// and computes the plan.
func computePlan(ctx context.Context, env *Env, s *session, d state.Desired, o plan.Options) (*plan.Plan, error) {
	managed := make(map[string]bool, len(d.Users))
	for _, u := range d.Users {
		if u.ManageTokens {
			managed[state.EmailKey(u.Email)] = true
		}
	}
	progress := newProgress(env, "reading")
	actual, err := s.reader.ReadActual(ctx, func(u state.User) bool {
		progress.add(1)
		return managed[state.EmailKey(u.Email.Value())]
	})
	progress.done()
	if err != nil {
		return nil, fmt.Errorf("reading the remote state: %w", err)
	}
	// Aliases are write-only: the declared alias of each existing user is looked up
	// with one fetch (not a poll), so that a missing or moved alias is planned.
	if aliases := plan.AliasesToRead(d, actual.Users); len(aliases) > 0 {
		if actual.Aliases, err = s.reader.ReadAliases(ctx, aliases); err != nil {
			return nil, fmt.Errorf("reading the remote state: %w", err)
		}
	}
	p, err := plan.Compute(d, actual, o)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// showPlan renders the plan in the chosen format.
func showPlan(env *Env, w io.Writer, p *plan.Plan, format string) error {
	switch format {
	case "json":
		return plan.RenderJSON(w, p)
	case "markdown":
		return plan.RenderMarkdown(w, p)
	default:
		return plan.RenderText(w, p, plan.TextOptions{Color: w == env.IO.Out && env.IO.ColorOut(env.Globals.NoColor)})
	}
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

// writeFileAtomic writes data to path through a temporary file and a rename, so a
// reader never sees half a file. A missing parent directory is created.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cbk-sync-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
