package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// interrupts are the two stages of SIGINT/SIGTERM, as a careful terminal tool has
// them: the first signal cancels stop (a prompt is answered "no", reads stop, an apply
// starts nothing new and gives the calls in flight a short grace period); the second
// cancels abort (the calls in flight are cancelled, the report is written, the
// secrets sink flushed, and the run exits 3).
type interrupts struct {
	stop  context.Context
	abort context.Context
}

// notifyInterrupts installs the signal handler; release uninstalls it.
func notifyInterrupts() (in interrupts, release func()) {
	stop, cancelStop := context.WithCancel(context.Background())
	abort, cancelAbort := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for n := 0; n < 2; n++ {
			select {
			case <-ch:
			case <-done:
				return
			}
			if n == 0 {
				cancelStop()
			} else {
				cancelAbort()
			}
		}
	}()
	return interrupts{stop: stop, abort: abort}, func() {
		signal.Stop(ch)
		close(done)
		cancelStop()
		cancelAbort()
	}
}
