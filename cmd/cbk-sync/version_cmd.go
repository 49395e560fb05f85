package main

import "fmt"

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints "cbk-sync <version>".
func (c *VersionCmd) Run(env *Env) error {
	_, err := fmt.Fprintf(env.IO.Out, "cbk-sync %s\n", version)
	return err
}
