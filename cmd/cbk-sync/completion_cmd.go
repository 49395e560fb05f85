package main

import (
	"fmt"
	"strings"

	"github.com/alecthomas/kong"
)

// CompletionCmd prints a shell completion script.
//
// Completion itself is kongplete's: the shell runs cbk-sync with COMP_LINE set, and
// run() answers from the kong model (every command, flag and enum value), so the
// scripts never go stale. kongplete only writes these scripts into a shell's rc file
// (InstallCompletions), which a packaged tool must not do; the three lines per shell
// are its templates, printed instead.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// Run prints the script for the shell; it completes the cbk-sync found on PATH.
func (c *CompletionCmd) Run(env *Env, kctx *kong.Context) error {
	_, err := fmt.Fprint(env.IO.Out, completionScript(c.Shell, kctx.Model.Name, kctx.Model.Name))
	return err
}

// completionScript is the script for shell that completes cmd by running bin.
func completionScript(shell, cmd, bin string) string {
	switch shell {
	case "zsh":
		return "#compdef " + cmd + "\nautoload -U +X bashcompinit && bashcompinit\ncomplete -o nospace -C " + bin + " " + cmd + "\n"
	case "fish":
		fn := "__complete_" + strings.ReplaceAll(cmd, "-", "_")
		return "function " + fn + "\n" +
			"    set -lx COMP_LINE (commandline -cp)\n" +
			"    test -z (commandline -ct)\n" +
			"    and set COMP_LINE \"$COMP_LINE \"\n" +
			"    " + bin + "\n" +
			"end\n" +
			"complete -f -c " + cmd + " -a \"(" + fn + ")\"\n"
	default:
		return "complete -o default -C " + bin + " " + cmd + "\n"
	}
}
