package main

import (
	"fmt"

	"github.com/alecthomas/kong"
)

// ManCmd prints the man page, generated from the same kong model as --help.
type ManCmd struct{}

// Run writes cbk-sync(1) in roff, dated with the build date (none for a build from a
// checkout without VCS information), so that a release's man page is reproducible.
func (c *ManCmd) Run(env *Env, kctx *kong.Context) error {
	_, when := buildCommit()
	if len(when) >= len("2006-01-02") {
		when = when[:len("2006-01-02")]
	} else {
		when = ""
	}
	_, err := fmt.Fprint(env.IO.Out, manPage(kctx.Model, buildVersion(), when))
	return err
}
