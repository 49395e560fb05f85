package main

import (
	"fmt"
	"runtime/debug"
)

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints "cbk-sync <version>".
func (c *VersionCmd) Run(env *Env) error {
	_, err := fmt.Fprintf(env.IO.Out, "cbk-sync %s\n", buildVersion())
	return err
}

// buildVersion is the version set with -ldflags "-X main.version=...", else the module
// version that `go install ...@vX.Y.Z` recorded, else "dev".
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
