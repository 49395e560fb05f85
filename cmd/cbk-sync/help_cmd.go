package main

import (
	"github.com/alecthomas/kong"
)

// HelpCmd shows the help of a command, as --help does.
type HelpCmd struct {
	Command []string `arg:"" optional:"" help:"The command, e.g. sync."`
}

// helpParser holds the parser, for help to parse "COMMAND --help" with.
type helpParser struct {
	k    *kong.Kong
	exit *int // set by the parser's exit hook once the help is printed
}

// Run prints the help of the named command (kong prints it and exits 0 through the
// parser's exit hook); an unknown command is an error that lists the commands.
func (c *HelpCmd) Run(h *helpParser) error {
	_, err := h.k.Parse(append(append([]string{}, c.Command...), "--help"))
	if *h.exit >= 0 {
		return nil // the help was printed; what kong parses after it does not matter
	}
	return err
}

// helpPath is the command whose --help an error points at: the subcommand that was
// being parsed, else cbk-sync itself.
func helpPath(kctx *kong.Context) string {
	if kctx != nil {
		if n := kctx.Selected(); n != nil {
			return n.FullPath()
		}
	}
	return "cbk-sync"
}
