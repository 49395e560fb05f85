package main

import (
	"context"
	"fmt"

	"github.com/cbk-sync/cbk-sync/internal/plan"
)

// ValidateCmd checks configuration files without calling the API.
type ValidateCmd struct {
	ConfigFlags
}

// Run loads the files and reports every problem.
func (c *ValidateCmd) Run(ctx context.Context, env *Env) error {
	d, err := c.load(ctx, env)
	if err != nil {
		return err
	}
	tokens := 0
	for _, u := range d.Users {
		tokens += len(u.Tokens)
	}
	fmt.Fprintf(env.IO.Out, "Configuration is valid: owner %q, %s, %s.\n", d.Owner, plan.Count(len(d.Users), "user", "users"), plan.Count(tokens, "token", "tokens"))
	return nil
}
