package main

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/cbk-sync/cbk-sync/internal/exitcode"
)

// The reference of the command line is made from the kong model, the one that parses
// the arguments and prints --help: the man page (cbk-sync man) and docs/commands.md
// (tested equal to commandsMarkdown) cannot list a flag that does not exist, miss one
// that does, or show a hidden one.

// refFlag is one visible flag.
type refFlag struct {
	Short       rune
	Name        string
	Placeholder string // "" for a flag that takes no value
	Default     string
	Envs        []string
	Help        string
}

// refCommand is one visible command.
type refCommand struct {
	Path  string // "plan"
	Usage string // "cbk-sync plan [flags]"
	Help  string
	Args  []refFlag // positional arguments: Name and Help
	Flags []refFlag
}

// reference returns the global flags and the commands of the model, hidden ones left
// out, commands in the order of the CLI struct.
func reference(app *kong.Application) (globals []refFlag, cmds []refCommand) {
	globals = refFlags(app.Node.Flags)
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, c := range n.Children {
			if c.Hidden || c.Type != kong.CommandNode {
				continue
			}
			rc := refCommand{Path: c.Path(), Usage: app.Name + " " + c.Summary(), Help: c.Help, Flags: refFlags(c.Flags)}
			for _, p := range c.Positional {
				rc.Args = append(rc.Args, refFlag{Name: p.Summary(), Help: p.Help})
			}
			if c.Summary() != c.Path() || len(rc.Flags) > 0 {
				rc.Usage = strings.TrimSuffix(rc.Usage, " [flags]") + " [flags]"
			}
			cmds = append(cmds, rc)
			walk(c)
		}
	}
	walk(app.Node)
	return globals, cmds
}

func refFlags(flags []*kong.Flag) []refFlag {
	var out []refFlag
	for _, f := range flags {
		if f.Hidden {
			continue
		}
		r := refFlag{Short: f.Short, Name: f.Name, Envs: f.Envs, Help: f.Help}
		if !f.IsBool() && !f.IsCounter() {
			switch {
			case f.PlaceHolder != "":
				r.Placeholder = f.PlaceHolder
			case f.Enum != "":
				r.Placeholder = strings.Join(f.EnumSlice(), "|")
			case f.Tag.Type == "path" || f.Tag.Type == "existingfile":
				r.Placeholder = "PATH"
			case f.Target.Type() == reflect.TypeOf(time.Duration(0)):
				r.Placeholder = "DURATION"
			case f.Target.CanInt() || f.Target.CanFloat() || f.Target.CanUint():
				r.Placeholder = "N"
			default:
				r.Placeholder = strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
			}
		}
		if f.HasDefault && !f.IsBool() {
			r.Default = f.Default
		}
		if f.IsSlice() && !strings.Contains(strings.ToLower(r.Help), "repeatable") {
			r.Help = strings.TrimSpace(r.Help + " Repeatable.")
		}
		out = append(out, r)
	}
	return out
}

// spelling is how a flag is written: "-f, --file=FILE".
func (f refFlag) spelling() string {
	s := "--" + f.Name
	if f.Placeholder != "" {
		s += "=" + f.Placeholder
	}
	if f.Short != 0 {
		s = "-" + string(f.Short) + ", " + s
	}
	return s
}

// commandsMarkdown is the generated reference part of docs/commands.md.
func commandsMarkdown(app *kong.Application) string {
	globals, cmds := reference(app)
	var b strings.Builder
	// A table cell: a pipe would end it, an asterisk start emphasis.
	cell := strings.NewReplacer("|", `\|`, "*", `\*`).Replace
	table := func(flags []refFlag) {
		b.WriteString("| flag | default | meaning |\n|---|---|---|\n")
		for _, f := range flags {
			def := "–"
			if f.Default != "" {
				def = "`" + cell(f.Default) + "`"
			}
			help := f.Help
			for _, e := range f.Envs {
				help += " Environment: `" + e + "`."
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", cell(f.spelling()), def, cell(help))
		}
	}
	b.WriteString("### Global flags\n\nEvery command takes these.\n\n")
	table(globals)
	for _, c := range cmds {
		fmt.Fprintf(&b, "\n### %s %s\n\n%s\n\n```\n%s\n```\n", app.Name, c.Path, c.Help, c.Usage)
		if len(c.Args) > 0 {
			b.WriteString("\n| argument | meaning |\n|---|---|\n")
			for _, a := range c.Args {
				fmt.Fprintf(&b, "| `%s` | %s |\n", cell(a.Name), cell(a.Help))
			}
		}
		if len(c.Flags) > 0 {
			b.WriteString("\n")
			table(c.Flags)
		}
	}
	return b.String()
}

// manDescription is the DESCRIPTION of the man page.
const manDescription = `cbk-sync keeps the partner users (sub-accounts) of a ChatBotKit account, and their API tokens, equal to what reviewed YAML files say. It lists what exists, computes a plan, shows it for review and applies it: it creates, updates, adopts and deletes users, and creates, updates, rotates and revokes tokens.
Every user and token it creates or adopts carries the meta key cbkSyncOwner; users it does not own are never deleted, and caps refuse a run that would delete or update too many. plan, sync --dry-run, show and export cannot write.
The API token and the secrets of created tokens are never printed: a new secret goes only where --secrets-out or --secrets-exec says.
An embedded emulator of the Partner API (--emulator FILE, or the emulator command) runs every command with no account, no credentials and no network.`

// roffText escapes s for roff: a backslash, and a line that would start with a
// control character; hyphens are made minus signs so that flags can be copied.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// manPage is cbk-sync(1) in roff. date is the build date (YYYY-MM-DD, or "").
func manPage(app *kong.Application, version, date string) string {
	globals, cmds := reference(app)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	flags := func(fs []refFlag) {
		for _, f := range fs {
			p(".TP")
			p(`\fB%s\fR`, roffText(f.spelling()))
			text := f.Help
			if f.Default != "" {
				text += " Default: " + f.Default + "."
			}
			for _, e := range f.Envs {
				text += " Environment: " + e + "."
			}
			p("%s", roffText(text))
		}
	}
	p(`.TH CBK-SYNC 1 "%s" "%s" "User Commands"`, date, roffText(app.Name+" "+version))
	p(".SH NAME")
	p(`%s \- %s`, app.Name, roffText(strings.TrimSuffix(lowerFirst(app.Help), ".")))
	p(".SH SYNOPSIS")
	p(`\fB%s\fR \fICOMMAND\fR [\fIFLAGS\fR] [\fIARGUMENTS\fR]`, app.Name)
	p(".SH DESCRIPTION")
	for i, para := range strings.Split(manDescription, "\n") {
		if i > 0 {
			p(".PP")
		}
		p("%s", roffText(para))
	}
	p(".SH GLOBAL FLAGS")
	flags(globals)
	p(".SH COMMANDS")
	for _, c := range cmds {
		p(`.SS "%s"`, roffText(c.Usage))
		p("%s", roffText(c.Help))
		for _, a := range c.Args {
			p(".TP")
			p(`\fI%s\fR`, roffText(a.Name))
			p("%s", roffText(a.Help))
		}
		flags(c.Flags)
	}
	p(".SH EXIT STATUS")
	for _, c := range exitcode.All {
		p(".TP")
		p("%d", c.Value)
		p("%s", roffText(exitcode.Plain(c.Meaning)))
	}
	p(".SH ENVIRONMENT")
	p(".TP")
	p("%s", roffText(strings.Join(tokenEnvVars, ", ")))
	p("%s", roffText("The partner account's API token, read in this order, unless --api-token-file is given."))
	seen := map[string]bool{}
	for _, f := range append(append([]refFlag{}, globals...), allFlags(cmds)...) {
		for _, e := range f.Envs {
			if !seen[e] {
				seen[e] = true
				p(".TP")
				p("%s", roffText(e))
				p("%s", roffText("The default of --"+f.Name+": "+f.Help))
			}
		}
	}
	p(".TP")
	p("NO_COLOR")
	p("%s", roffText("Set: never colour output, as --no-color."))
	p(".SH SEE ALSO")
	p("%s", roffText("cbk-sync help COMMAND; cbk-sync schema prints the JSON Schema of the configuration. "+
		"The README.md and docs/ of the source repository: docs/configuration.md, docs/commands.md, docs/output.md."))
	return b.String()
}

func allFlags(cmds []refCommand) []refFlag {
	var out []refFlag
	for _, c := range cmds {
		out = append(out, c.Flags...)
	}
	return out
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
