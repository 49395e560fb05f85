package main

import (
	"encoding/json"
	"fmt"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/plan"
)

// IDsFlags hand the declared users' platform IDs to the partner's app and to Terraform.
type IDsFlags struct {
	IDsOut string `name:"ids-out" type:"path" placeholder:"FILE" help:"Write a JSON map of every declared user's identities (email, externalId, id) to its platform ID, atomically (mode 0644), from what the run read: no extra API call. After an apply, created users have their new IDs; in a plan, users still to be created map to null."`
}

// idsOutput is the ids file, checked with the run's other destinations before any API
// call.
func (f *IDsFlags) idsOutput() output { return output{flag: "--ids-out", path: f.IDsOut} }

// writeIDsAfter writes the --ids-out file at the end of a run that computed p and
// ended with err, and returns the run's error: a file that cannot be written after
// changes were made exits 3 (the changes stand), before any change 1; a run that
// already failed keeps its own error and logs this one.
func (f *IDsFlags) writeIDsAfter(env *Env, p *plan.Plan, err error) error {
	werr := f.writeIDs(env, p, env.facts.report)
	switch {
	case werr == nil:
		return err
	case err != nil:
		env.Log.Error("--ids-out: not written", "err", werr)
		return err
	case env.facts.report != nil:
		return withCode(exitPartial, fmt.Errorf("the changes were made but %w", werr))
	}
	return werr
}

// writeIDs writes the --ids-out file of p, with the IDs of the users report created.
func (f *IDsFlags) writeIDs(env *Env, p *plan.Plan, report *apply.Report) error {
	if f.IDsOut == "" || p == nil {
		return nil
	}
	created := map[string]string{}
	if report != nil {
		for _, res := range report.Results {
			if res.Action == plan.UserCreate && res.Status == apply.StatusOK && res.UserID != "" {
				created[res.Identity.Key()] = res.UserID
			}
		}
	}
	b, err := json.MarshalIndent(p.IDs(created), "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(f.IDsOut, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--ids-out: %w", err)
	}
	env.Log.Info("ids written", "file", f.IDsOut, "users", len(p.Declared))
	return nil
}
