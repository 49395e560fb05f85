package main

import (
	"bytes"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// lockedBuffer is a bytes.Buffer safe for the handler's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A run that outlives an interrupt is ended anyway: after the grace period of a first
// interrupt (plus the time to write the report and release the lock), or soon after a
// second; exit 1 before any write began, 3 after.
func TestInterruptForcesTheExit(t *testing.T) {
	for name, tc := range map[string]struct {
		signals int
		writing bool
		want    string
		code    int
	}{
		"first, reading":  {1, false, "after the interrupt's grace period; exiting now (exit 1)", exitError},
		"first, applying": {1, true, "after the interrupt's grace period; exiting now (exit 3)", exitPartial},
		"second":          {2, true, "after the second interrupt; exiting now (exit 3)", exitPartial},
	} {
		t.Run(name, func(t *testing.T) {
			ch := make(chan os.Signal, 2)
			exited := make(chan int, 1)
			var w lockedBuffer
			in, release := watchInterrupts(ch, &w, func(code int) { exited <- code })
			defer release()
			// The second stage must be what ends it: the first one's bound is far off.
			in.state.afterGrace, in.state.afterAbort = time.Millisecond, time.Millisecond
			if tc.signals == 2 {
				in.state.afterGrace = time.Hour
			}
			in.state.setGrace(time.Millisecond)
			if tc.writing {
				in.state.writing()
			}
			for range tc.signals {
				ch <- syscall.SIGTERM
			}
			select {
			case code := <-exited:
				assert.Equal(t, tc.code, code)
			case <-time.After(30 * time.Second): // a bound against a hang
				t.Fatal("the run was not ended")
			}
			<-in.stop.Done()
			if tc.signals == 2 {
				<-in.abort.Done()
			} else {
				assert.NoError(t, in.abort.Err(), "one interrupt does not abort")
			}
			assert.Contains(t, w.String(), tc.want)
		})
	}

}
