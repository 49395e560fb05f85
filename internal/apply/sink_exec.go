package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"mvdan.cc/sh/v3/shell"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// DefaultExecTimeout bounds one run of the --secrets-exec command when no timeout is given.
const DefaultExecTimeout = time.Minute

// The variables a --secrets-exec command line may use, and that the command finds in its
// environment: the record's fields but the secret, which is only ever on stdin.
const (
	ExecVarEmail     = "CBK_SYNC_EMAIL"
	ExecVarUserID    = "CBK_SYNC_USER_ID"
	ExecVarTokenName = "CBK_SYNC_TOKEN_NAME"
	ExecVarTokenID   = "CBK_SYNC_TOKEN_ID"
	// ExecVarRevoked is set to 1 (only in the environment) when the command is called
	// by Retract: the record, marked "revoked": true, is of a token revoked after its
	// secret was delivered; the command should roll back or delete that version.
	ExecVarRevoked = "CBK_SYNC_REVOKED"
)

// execWaitDelay is how long the output of a command that has exited is still read.
const execWaitDelay = 2 * time.Second

// execOutputMax bounds what is kept of each of the command's output streams, and
// execLogMax what of it is logged (after redaction, so no cut can expose a secret).
const (
	execOutputMax = 64 << 10
	execLogMax    = 4 << 10
)

// ExecSink hands each secret to a command: the command runs once per secret with the
// record (one JSON line) on its stdin, and exit status 0 means delivered. The secret is
// never in its argv or environment; the record's other fields are, as CBK_SYNC_EMAIL,
// CBK_SYNC_USER_ID, CBK_SYNC_TOKEN_NAME and CBK_SYNC_TOKEN_ID, which the command line
// may use too. Its stdout and stderr are logged with every secret removed.
type ExecSink struct {
	line    string // the command line as given
	path    string // its program, resolved at construction
	timeout time.Duration
	env     []string // the child's environment but the record's variables
	log     *slog.Logger
	redact  *state.Redactor
}

// ExecOptions tune NewExecSink.
type ExecOptions struct {
	// Timeout bounds each run; 0 means DefaultExecTimeout. A command still running then
	// is killed and the delivery fails.
	Timeout time.Duration
	// Env is the environment the command starts from; nil means os.Environ().
	Env []string
	// DropEnv names variables removed from it: the API token's, which a hand-off has no
	// business with.
	DropEnv []string
	// Logger gets the command's output; nil discards it.
	Logger *slog.Logger
	// Redactor is the run's: the command's output is scrubbed of its secrets and of
	// the record's, in every form (state.Redactor.With). Nil knows only the record's.
	Redactor *state.Redactor
}

// NewExecSink checks cmdline and finds its program, so that a command that cannot run
// is refused before any change. The line is split into words as a POSIX shell would
// (quotes, backslashes, ~), without a shell: no pipes, redirections, globs or command
// substitution (use sh -c '...' for those). The only variables expanded are the
// record's (CBK_SYNC_*, per secret) and HOME; any other is an error, so no variable of
// this process's environment can end up in an argv that other users can read.
func NewExecSink(cmdline string, o ExecOptions) (*ExecSink, error) {
	words, err := expandCommand(cmdline, map[string]string{
		ExecVarEmail: "a@example.test", ExecVarUserID: "u", ExecVarTokenName: "t", ExecVarTokenID: "t",
	})
	if err != nil {
		return nil, err
	}
	path, err := exec.LookPath(words[0])
	if err != nil {
		return nil, fmt.Errorf("the command %q cannot be run: %w; install it or give its path", words[0], errors.Unwrap(err))
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultExecTimeout
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	env := make([]string, 0, len(o.Env))
	for _, kv := range o.Env {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(o.DropEnv, name) || strings.HasPrefix(name, "CBK_SYNC_") {
			continue
		}
		env = append(env, kv)
	}
	return &ExecSink{line: cmdline, path: path, timeout: o.Timeout, env: env, log: o.Logger, redact: o.Redactor}, nil
}

// expandCommand splits cmdline into words with vars (and HOME) as its only variables.
func expandCommand(cmdline string, vars map[string]string) ([]string, error) {
	var unknown []string
	words, err := shell.Fields(cmdline, func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		switch name {
		case "HOME":
			return os.Getenv("HOME")
		case "IFS": // asked by the word splitting itself
			return " \t\n"
		case "PWD": // asked by tilde expansion
			wd, _ := os.Getwd()
			return wd
		}
		if !slices.Contains(unknown, name) {
			unknown = append(unknown, name)
		}
		return ""
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot split the command line into words: %w", err)
	case len(unknown) > 0:
		return nil, fmt.Errorf("the command line uses $%s, but only %s, %s, %s, %s and HOME are expanded (by cbk-sync, not a shell); to use a shell, write sh -c '...'",
			strings.Join(unknown, ", $"), ExecVarEmail, ExecVarUserID, ExecVarTokenName, ExecVarTokenID)
	case len(words) == 0 || words[0] == "":
		return nil, errors.New("the command line is empty")
	}
	return words, nil
}

// Retract runs the command again with rec, which is marked "revoked": true (and
// CBK_SYNC_REVOKED=1 in its environment): the token whose secret it stored was revoked,
// so it should restore the previous version or delete this one. Exit 0 means done.
func (s *ExecSink) Retract(rec SecretRecord) error {
	rec.Revoked = true
	return s.Deliver(rec)
}

// Command is the command line as given, for the plan and the report.
func (s *ExecSink) Command() string { return s.line }

// Deliver runs the command with rec on stdin and returns once it has exited: nil for
// exit status 0, an error for anything else (a failure to start, a non-zero status, the
// timeout).
func (s *ExecSink) Deliver(rec SecretRecord) error {
	line, err := rec.Line()
	if err != nil {
		return err
	}
	vars := map[string]string{ExecVarEmail: rec.Email, ExecVarUserID: rec.UserID, ExecVarTokenName: rec.TokenName, ExecVarTokenID: rec.TokenID}
	words, err := expandCommand(s.line, vars)
	if err != nil {
		return fmt.Errorf("secrets-exec: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.path, words[1:]...)
	cmd.Args[0] = words[0]
	cmd.Stdin = bytes.NewReader(line)
	cmd.Env = slices.Clone(s.env)
	for _, k := range []string{ExecVarEmail, ExecVarUserID, ExecVarTokenName, ExecVarTokenID} {
		cmd.Env = append(cmd.Env, k+"="+vars[k])
	}
	if rec.Revoked {
		cmd.Env = append(cmd.Env, ExecVarRevoked+"=1")
	}
	stdout, stderr := &cappedBuffer{max: execOutputMax}, &cappedBuffer{max: execOutputMax}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A child that leaves a grandchild holding the pipes open must not hang the run:
	// once it has exited, its output is read for execWaitDelay more, then no longer.
	cmd.WaitDelay = execWaitDelay
	start := time.Now()
	runErr := cmd.Run()
	if errors.Is(runErr, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// It exited 0: the secret is stored, whatever a background process it left
		// behind still does with the output.
		runErr = nil
		s.log.Warn("secrets-exec: the command exited 0 but left a background process holding its output; stopped reading it",
			"email", rec.Email, "token_name", rec.TokenName, "token_id", rec.TokenID)
	}

	redact := s.redact.With(rec.Token.Reveal()).String
	attrs := []any{"email", rec.Email, "token_name", rec.TokenName, "token_id", rec.TokenID}
	outText, errText := redact(stdout.String()), redact(stderr.String())
	level := slog.LevelInfo
	if runErr != nil {
		level = slog.LevelWarn
	}
	for _, o := range []struct{ name, text string }{{"stdout", outText}, {"stderr", errText}} {
		if t := strings.TrimSpace(o.text); t != "" {
			s.log.Log(context.Background(), level, "secrets-exec output", append(attrs, "stream", o.name, "output", tail(t, execLogMax))...)
		}
	}
	if runErr == nil {
		return nil
	}
	why := runErr.Error()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		why = fmt.Sprintf("timed out after %s (--secrets-exec-timeout) and was killed", s.timeout)
	case errors.As(runErr, &ee):
		why = "ended with " + ee.ProcessState.String()
	default:
		why = "could not run: " + redact(why)
	}
	msg := fmt.Sprintf("secrets-exec: %s %s after %s", words[0], why, time.Since(start).Round(time.Millisecond))
	if t := strings.TrimSpace(errText); t != "" {
		msg += ": " + tail(lastLine(t), 200)
	}
	return errors.New(msg)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// cappedBuffer keeps the first max bytes written to it and discards the rest, so a
// chatty command cannot grow the run's memory.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string { return b.buf.String() }

var _ io.Writer = (*cappedBuffer)(nil)
