package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
)

// interruptibleWriter writes to w (stdout, for --secrets-out -) so that a write the
// reader never takes (a pipe nobody reads) is given up when ctx ends: the write runs
// in a goroutine that is left behind, and it and every later one fail. The secret it
// held counts as not delivered, so its token is revoked (or left pending for the next
// run), like any failed delivery.
type interruptibleWriter struct {
	ctx context.Context
	w   io.Writer

	mu     sync.Mutex
	broken error // set once a write was given up: the stream may hold part of a line
}

func (iw *interruptibleWriter) Write(p []byte) (int, error) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if iw.broken != nil {
		return 0, iw.broken
	}
	type written struct {
		n   int
		err error
	}
	ch := make(chan written, 1)
	go func() {
		n, err := iw.w.Write(p)
		ch <- written{n, err}
	}()
	select {
	case r := <-ch:
		return r.n, r.err
	case <-iw.ctx.Done():
		iw.broken = fmt.Errorf("interrupted while the reader of stdout was not reading: %w", context.Cause(iw.ctx))
		return 0, iw.broken
	}
}

// Sync syncs w when it can be (stdout redirected to a file), as the secrets sink asks.
func (iw *interruptibleWriter) Sync() error {
	if s, ok := iw.w.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}

// readerGone reports an error that only says stdout's reader stopped reading (EPIPE:
// `cbk-sync plan | head -1`) in a command that changes nothing: it has shown what was
// wanted, and ends quietly with exit 0, as a pager's input should. A command that may
// write (sync without --dry-run, apply) still reports it: it stopped before applying,
// or the report could not be written.
func readerGone(err error, command string, dryRun bool) bool {
	if err == nil || !errors.Is(err, syscall.EPIPE) {
		return false
	}
	name, _, _ := strings.Cut(command, " ")
	switch name {
	case "sync":
		return dryRun
	case "apply", "emulator":
		return false
	}
	return true
}
