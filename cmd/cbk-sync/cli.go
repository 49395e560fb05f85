package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"

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
	if err != nil && errors.Is(err, syscall.EPIPE) {
		return exitOK // the help went to a reader that had read enough (| head -1)
	}
	if err != nil {
		help := "cbk-sync"
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			help = helpPath(pe.Context)
		}
		// The flags did not parse, so the view is chosen from the arguments.
		g := Globals{LogFormat: "text"}
		if jsonRequested(args) {
			g.LogFormat = "json"
		}
		newView(io, g, redact, planShow{}).UsageError(err, help, pe != nil)
		return exitError
	}
	in.state.setGrace(cli.InterruptGrace)
	v := newView(io, cli.Globals, redact, planShowOf(kctx))
	env := &Env{IO: io, Log: v.Log(), view: v, Globals: cli.Globals, redact: redact, abort: in.abort, interrupt: in.state, facts: &runFacts{start: time.Now()}}
	mf := metricsFlagsOf(kctx)
	learnSecrets(kctx, env, mf)
	err = kctx.Run(env)
	if readerGone(err, kctx.Command(), cli.Sync.DryRun) {
		return exitOK
	}
	code := exitCodeOf(err)
	v.Error(err, code)
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

// Env is what every command's Run receives: the streams, the logger and the globals.
type Env struct {
	IO  *IOStreams
	Log *slog.Logger // view.Log()
	// view shows the plan, the end of an apply and the error, as --log-format says.
	view    view
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
