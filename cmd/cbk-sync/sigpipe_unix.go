//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// catchSIGPIPE makes a write to a closed stdout fail with EPIPE instead of killing
// the process: with --secrets-out - the reader going away is a sink failure, which
// revokes the undelivered token and is reported like any other (the Go runtime
// dies of SIGPIPE on fd 1 and 2 unless the signal is notified). Notify rather than
// Ignore, so that child processes still get the default disposition.
func catchSIGPIPE() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}
