package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// The build stamps these with -ldflags "-X main.version=... -X main.commit=... -X
// main.date=..." (.goreleaser.yaml does). They are the one source of the version:
// `cbk-sync version`, `--version` and the User-Agent all read them through
// buildVersion and versionLine.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints "cbk-sync <version> (commit <commit>, built <date>, <go>, <os>/<arch>)".
func (c *VersionCmd) Run(env *Env) error {
	_, err := fmt.Fprintln(env.IO.Out, versionLine())
	return err
}

// versionLine is the one-line answer of `cbk-sync version` and `--version`.
func versionLine() string {
	c, d := buildCommit()
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return fmt.Sprintf("cbk-sync %s (commit %s, built %s, %s, %s/%s)", buildVersion(), c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
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

// buildCommit is the commit and date stamped with -ldflags, else what the go command
// recorded from the VCS when it built from a checkout.
func buildCommit() (rev, when string) {
	rev, when = commit, date
	if rev != "" && when != "" {
		return rev, when
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return rev, when
	}
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && rev == "":
			rev = s.Value
		case s.Key == "vcs.time" && when == "":
			when = s.Value
		}
	}
	return rev, when
}
