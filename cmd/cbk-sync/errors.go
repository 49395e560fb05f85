package main

import (
	"errors"
	"fmt"

	"github.com/cbk-sync/cbk-sync/internal/exitcode"
)

// The exit codes, from their one table (internal/exitcode, docs/output.md); only Main
// turns them into a process status.
const (
	exitOK      = exitcode.OK
	exitError   = exitcode.Error
	exitPending = exitcode.Pending
	exitPartial = exitcode.Partial
	exitUnsafe  = exitcode.Unsafe
	exitLocked  = exitcode.Locked
)

// codedError carries the exit code a failure maps to. A nil err with a code is a
// non-error outcome such as "changes pending".
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *codedError) Unwrap() error { return e.err }

// withCode wraps err with an exit code.
func withCode(code int, err error) error { return &codedError{code: code, err: err} }

// unsafef is a refusal for safety reasons (exit 4).
func unsafef(format string, args ...any) error {
	return withCode(exitUnsafe, fmt.Errorf(format, args...))
}

// exitCodeOf maps an error returned by a command to the process status.
func exitCodeOf(err error) int {
	if err == nil {
		return exitOK
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}
