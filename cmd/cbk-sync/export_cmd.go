package main

import (
	"context"
	"fmt"

	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ExportCmd writes the remote state as a valid configuration.
type ExportCmd struct {
	APIFlags
	Out    string `short:"o" name:"output" type:"path" placeholder:"FILE" help:"Write the configuration to FILE instead of stdout."`
	Owner  string `required:"" help:"Owner scope of the configuration: users owned by it are exported."`
	Tokens bool   `help:"Also export the users' tokens (their names, descriptions and meta; never secrets)."`
	All    bool   `help:"Also export unmanaged users (no owner marker), to bootstrap a configuration; planning it adopts them."`
	Force  bool   `help:"Replace the file -o names if it exists (else that is refused)."`
}

// Validate checks the owner before anything is read.
func (c *ExportCmd) Validate() error {
	if !config.ValidOwner(c.Owner) {
		return fmt.Errorf("--owner %q: use 1 to 63 characters of a-z, 0-9 and -", c.Owner)
	}
	return nil
}

// Run reads the users (and tokens) and writes them as YAML.
func (c *ExportCmd) Run(ctx context.Context, env *Env) error {
	if err := prepareOutputs([]output{{flag: "--output", path: c.Out, keep: !c.Force}, c.emulatorOutput()}, c.inputs("")); err != nil {
		return err
	}
	s, err := c.open(env, false)
	if err != nil {
		return err
	}
	defer s.close()
	include := func(u state.User) bool {
		if u.IsLease() {
			return false // another run's lock, never part of a configuration
		}
		switch u.Owner() {
		case c.Owner:
			return true
		case "":
			return c.All
		}
		return false
	}
	actual, err := s.reader.ReadActual(ctx, func(u state.User) bool { return c.Tokens && include(u) })
	if err != nil {
		return fmt.Errorf("reading the remote state: %w", err)
	}
	var users []state.User
	tokens := map[string][]state.Token{}
	for _, u := range actual.Users {
		if !include(u) {
			continue
		}
		users = append(users, u)
		if c.Tokens {
			for _, t := range actual.Tokens[u.ID] {
				if o := t.Owner(); o == c.Owner || (o == "" && c.All) {
					tokens[u.ID] = append(tokens[u.ID], t)
				}
			}
			if tokens[u.ID] == nil {
				tokens[u.ID] = []state.Token{}
			}
		}
	}
	if !c.Tokens {
		tokens = nil
	}
	out, err := config.Export(c.Owner, users, tokens)
	if err != nil {
		return err
	}
	if c.Out != "" {
		if err := atomicfile.Write(c.Out, out, 0o644); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		env.Log.Info("exported", "users", len(users), "file", c.Out)
		return nil
	}
	_, err = env.IO.Out.Write(out)
	return err
}
