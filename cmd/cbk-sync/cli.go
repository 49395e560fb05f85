package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// CLI is the command line of cbk-sync.
type CLI struct {
	Globals

	Validate ValidateCmd `cmd:"" help:"Check configuration files; no API call."`
	Plan     PlanCmd     `cmd:"" help:"Show what sync would change (reads only)."`
	Sync     SyncCmd     `cmd:"" help:"Plan and apply; --dry-run only plans."`
	Apply    ApplyCmd    `cmd:"" help:"Apply a plan saved with 'plan --out', if the remote objects it depends on have not changed since."`
	Show     ShowCmd     `cmd:"" help:"Show a plan saved with 'plan --out', checked; no API call."`
	Export   ExportCmd   `cmd:"" help:"Write the remote users (and tokens) as a configuration file."`
	Unlock   UnlockCmd   `cmd:"" help:"Show who holds the account's lock and break it (like terraform force-unlock)."`
	Emulator EmulatorCmd `cmd:"" help:"Serve the embedded Partner API emulator."`
	Schema   SchemaCmd   `cmd:"" help:"Print the JSON Schema of the configuration format."`
	Version  VersionCmd  `cmd:"" help:"Print the version."`
	Help     HelpCmd     `cmd:"" help:"Show the help of cbk-sync or of a command: help [COMMAND]."`

	Completion CompletionCmd `cmd:"" help:"Print a shell completion script (bash, zsh, fish)."`
	Man        ManCmd        `cmd:"" help:"Print the man page (roff)."`
}

// Globals are the flags every command takes.
type Globals struct {
	ShowVersion kong.VersionFlag `name:"version" help:"Print the version and exit."`
	LogFormat   string           `name:"log-format" enum:"text,json" default:"text" help:"Log format on stderr: text or json."`
	NoColor     bool             `name:"no-color" help:"Never colour output (also NO_COLOR)."`
	Quiet       bool             `short:"q" help:"Log only errors."`
	Verbose     bool             `short:"v" help:"Log every API request (debug)."`
	// InterruptGrace is how long the calls in flight may finish after a first
	// interrupt; hidden, for tests.
	InterruptGrace time.Duration `name:"interrupt-grace" hidden:"" default:"10s"`
}

// modelOptions are the options that shape the command-line model: what --help, the
// man page and docs/commands.md are made from.
func modelOptions() []kong.Option {
	return []kong.Option{
		kong.Name("cbk-sync"),
		kong.Description("Keep ChatBotKit partner users and their API tokens equal to reviewed YAML files."),
		kong.Vars{"version": versionLine(), "default_api_url": defaultAPIURL},
	}
}

// Main runs cbk-sync with args and returns the process exit status.
func Main(args []string) int {
	catchSIGPIPE()
	in, release := notifyInterrupts()
	defer release()
	return runInterruptible(in, args, SystemStreams())
}

// run is Main with its dependencies passed in, for tests: cancelling ctx is the first
// interrupt; there is no second.
func run(ctx context.Context, args []string, io *IOStreams) int {
	return runInterruptible(interrupts{stop: ctx, abort: context.WithoutCancel(ctx)}, args, io)
}

func runInterruptible(in interrupts, args []string, io *IOStreams) int {
	ctx := in.stop
	var cli CLI
	redact := state.NewRedactor()
	exitCode := -1
	help := &helpParser{}
	parser, err := kong.New(&cli, append(modelOptions(),
		kong.Bind(help),
		kong.Writers(io.Out, io.ErrOut),
		kong.Exit(func(code int) { exitCode = code }),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.BindTo(ctx, (*context.Context)(nil)),
	)...)
	if err != nil {
		fmt.Fprintf(io.ErrOut, "error: %v\n", err)
		return exitError
	}
	help.k, help.exit = parser, &exitCode
	// A shell asking for completions (COMP_LINE set by the script of 'cbk-sync
	// completion') is answered from the kong model, and nothing else runs.
	kongplete.Complete(parser, kongplete.WithExitFunc(func(code int) { exitCode = code }))
	if exitCode >= 0 {
		return exitCode
	}
	kctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help, or kong exiting by itself
		return exitCode
	}
	if err != nil {
		help := "cbk-sync"
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			help = helpPath(pe.Context)
		}
		if jsonRequested(args) {
			g := Globals{LogFormat: "json"}
			newLogger(io, g, redact).Error("error", "error", err.Error(), "help", help+" --help", "exit_code", exitError)
			return exitError
		}
		fmt.Fprintf(io.ErrOut, "error: %v\n", err)
		if pe != nil {
			fmt.Fprintf(io.ErrOut, "Run '%s --help' for usage.\n", help)
		}
		return exitError
	}
	in.state.setGrace(cli.InterruptGrace)
	logger := newLogger(io, cli.Globals, redact)
	env := &Env{IO: io, Log: logger, Globals: cli.Globals, redact: redact, abort: in.abort, interrupt: in.state, facts: &runFacts{start: time.Now()}}
	mf := metricsFlagsOf(kctx)
	learnSecrets(kctx, env, mf)
	err = kctx.Run(env)
	code := exitCodeOf(err)
	if cli.LogFormat == "json" {
		logError(logger, err, code)
	} else {
		printError(io, redact, err)
	}
	if mf != nil {
		emitMetrics(ctx, env, mf, kctx.Selected().Name, code)
	}
	return code
}

// jsonRequested reports whether args ask for --log-format json, for an error met
// while parsing them (when the flags are not known yet).
func jsonRequested(args []string) bool {
	for i, a := range args {
		if a == "--log-format=json" || (a == "--log-format" && i+1 < len(args) && args[i+1] == "json") {
			return true
		}
	}
	return false
}

// logError is printError for --log-format json: one record per configuration problem
// (msg "configuration problem", with file, line, column, problem), then one record
// msg "error" with the error and the exit code.
func logError(log *slog.Logger, err error, code int) {
	cerrs, msg, ok := shownError(err)
	if !ok {
		return
	}
	for _, e := range cerrs {
		log.Error("configuration problem", "file", e.Pos.File, "line", e.Pos.Line, "column", e.Pos.Column, "problem", e.Msg)
	}
	log.Error("error", "error", msg, "exit_code", code)
}

// shownError sorts a command's error for printError and logError alike: nothing to
// show (no error, or an exit code whose reason the plan already gave), or the message
// of the final error line, with the configuration problems before it, if any.
func shownError(err error) (cerrs config.Errors, msg string, ok bool) {
	if err == nil {
		return nil, "", false
	}
	var ce *codedError
	if errors.As(err, &ce) && ce.err == nil {
		return nil, "", false
	}
	if errors.As(err, &cerrs) {
		return cerrs, plan.Count(len(cerrs), "problem", "problems") + " in the configuration; nothing was read or changed remotely", true
	}
	return nil, err.Error(), true
}

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

// printError shows a command's error on stderr: configuration problems one per line
// with their count, anything else as "error: ...". An exit code without an error (the
// plan already said why) prints nothing.
func printError(io *IOStreams, redact *state.Redactor, err error) {
	cerrs, msg, ok := shownError(err)
	if !ok {
		return
	}
	// An error may carry remote text (an API error body) or a config value: escaped, it
	// stays one line and cannot drive the terminal.
	for _, e := range cerrs {
		fmt.Fprintln(io.ErrOut, plan.Printable(redact.String(e.Error())))
	}
	fmt.Fprintf(io.ErrOut, "error: %s\n", plan.Printable(redact.String(msg)))
}

// Env is what every command's Run receives: the streams, the logger and the globals.
type Env struct {
	IO      *IOStreams
	Log     *slog.Logger
	Globals Globals
	// redact knows every secret of the run (state.Redactor): each output passes
	// through it.
	redact *state.Redactor
	// abort is cancelled by a second interrupt: calls in flight stop at once.
	abort context.Context
	// interrupt is told what a forced exit after an interrupt must know; nil in tests.
	interrupt *interruptState
	facts     *runFacts // what the run did, for --metrics-file and --pushgateway
}

func newLogger(io *IOStreams, g Globals, redact *state.Redactor) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case g.Quiet:
		level = slog.LevelError
	case g.Verbose:
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{
		Level: level,
		// Every attribute, the message included, passes through the redactor, so a
		// secret that reached a log call by mistake still never reaches the output. The
		// text format quotes any value with a control or format character, escaping it
		// (Go syntax); JSON would leave C1 and bidi controls raw for whoever reads the
		// log in a terminal, so there values pass through plan.Printable too.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey && g.LogFormat == "text" {
				return slog.Attr{}
			}
			clean := redact.String
			if g.LogFormat == "json" {
				clean = func(s string) string { return plan.Printable(redact.String(s)) }
			}
			switch a.Value.Kind() {
			case slog.KindDuration:
				// Durations are milliseconds in JSON, under a key that says so.
				if g.LogFormat == "json" {
					return slog.Int64(a.Key+"_ms", a.Value.Duration().Milliseconds())
				}
			case slog.KindString:
				a.Value = slog.StringValue(clean(a.Value.String()))
			case slog.KindAny:
				switch v := a.Value.Any().(type) {
				case error:
					a.Value = slog.StringValue(clean(v.Error()))
				case json.RawMessage: // a rendered view (the plan record)
					a.Value = slog.AnyValue(json.RawMessage(redact.Bytes(v)))
				case fmt.Stringer:
					a.Value = slog.StringValue(clean(v.String()))
				}
			}
			return a
		},
	}
	if g.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(io.ErrOut, opts))
	}
	return slog.New(slog.NewTextHandler(io.ErrOut, opts))
}
