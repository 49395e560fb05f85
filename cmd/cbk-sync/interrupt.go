package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// interrupts are the two stages of SIGINT/SIGTERM, as a careful terminal tool has
// them: the first signal cancels stop (a prompt is answered "no", reads stop, an apply
// starts nothing new and gives the calls in flight a short grace period); the second
// cancels abort (the calls in flight are cancelled, the report is written, the
// secrets sink flushed, and the run exits 3).
//
// Whatever the run waits on, an interrupt ends it: if it is still running
// afterGrace after the grace period of a first interrupt, or afterAbort after a
// second, the process exits there and then (see watchInterrupts). Every wait of the
// run listens to stop or abort; this is the bound for one that does not (a write to a
// pipe nobody reads, a read from the network stuck in the kernel).
type interrupts struct {
	stop  context.Context
	abort context.Context
	state *interruptState // nil when no signal handler is installed (tests)
}

// interruptState is what the signal handler learns while the run goes on.
type interruptState struct {
	grace atomic.Int64 // the grace period (--interrupt-grace), once the flags are parsed
	code  atomic.Int32 // the exit status of a forced exit: 1, or 3 once writes began
	// afterGrace and afterAbort bound the end of the run after the grace period of
	// a first interrupt and after a second one.
	afterGrace, afterAbort time.Duration
}

// The bounds of a forced exit: after the grace period the run still writes its report
// and releases its lock (releaseAfterInterrupt); after a second interrupt it only
// writes its report.
const (
	afterGrace = 10 * time.Second
	afterAbort = 3 * time.Second
)

// setGrace tells the handler the grace period of this run.
func (s *interruptState) setGrace(d time.Duration) {
	if s != nil {
		s.grace.Store(int64(d))
	}
}

// writing tells the handler that changes may be made from now on: a forced exit is
// then exit 3 (some may have been made), not 1.
func (s *interruptState) writing() {
	if s != nil {
		s.code.Store(exitPartial)
	}
}

// notifyInterrupts installs the signal handler; release uninstalls it.
func notifyInterrupts() (in interrupts, release func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	in, stopWatching := watchInterrupts(ch, os.Stderr, os.Exit)
	return in, func() {
		signal.Stop(ch)
		stopWatching()
	}
}

// watchInterrupts turns the signals received on ch into the stages of interrupts, and
// calls exit (writing why to w first) when the run outlives them.
func watchInterrupts(ch <-chan os.Signal, w io.Writer, exit func(int)) (interrupts, func()) {
	stop, cancelStop := context.WithCancelCause(context.Background())
	abort, cancelAbort := context.WithCancel(context.Background())
	st := &interruptState{afterGrace: afterGrace, afterAbort: afterAbort}
	st.grace.Store(int64(10 * time.Second))
	st.code.Store(exitError)
	done := make(chan struct{})
	force := func(after time.Duration, what string) *time.Timer {
		return time.AfterFunc(after, func() {
			select {
			case <-done:
				return
			default:
			}
			code := int(st.code.Load())
			fmt.Fprintf(w, "cbk-sync: still running %s after %s; exiting now (exit %d)\n", after, what, code)
			exit(code)
		})
	}
	go func() {
		var timers []*time.Timer
		defer func() {
			for _, t := range timers {
				t.Stop()
			}
		}()
		for n := 0; n < 2; n++ {
			var sig os.Signal
			select {
			case sig = <-ch:
			case <-done:
				return
			}
			if n == 0 {
				cancelStop(interruptedError{sig})
				grace := time.Duration(st.grace.Load())
				timers = append(timers, force(grace+st.afterGrace, "the interrupt's grace period"))
			} else {
				cancelAbort()
				timers = append(timers, force(st.afterAbort, "the second interrupt"))
			}
		}
		<-done
	}()
	return interrupts{stop: stop, abort: abort, state: st}, func() {
		close(done)
		cancelStop(nil)
		cancelAbort()
	}
}

// interruptedError is the cause of the first interrupt's cancellation, so that a wait
// it ends says "interrupted (terminated)", not "context canceled"; it still is a
// context.Canceled for every check of one.
type interruptedError struct{ sig os.Signal }

func (e interruptedError) Error() string {
	if e.sig == nil {
		return "interrupted"
	}
	return "interrupted (" + e.sig.String() + ")"
}

func (interruptedError) Is(target error) bool { return target == context.Canceled }
