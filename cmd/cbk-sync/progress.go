package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line progress bar on stderr when stderr is a terminal, and does
// nothing otherwise (CI logs stay clean).
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	on       bool
	n, total int
	last     time.Time
	drawn    bool
}

func newProgress(env *Env, label string) *progress {
	return &progress{w: env.IO.ErrOut, label: label, on: env.IO.ProgressOK() && !env.Globals.Quiet}
}

// add counts n more items of an unknown total.
func (p *progress) add(n int) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	p.draw(false)
}

// set records done of total.
func (p *progress) set(done, total int) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n, p.total = done, total
	p.draw(false)
}

// done clears the line.
func (p *progress) done() {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func (p *progress) draw(force bool) {
	// Redraw at most ten times a second: a terminal is slower than the API.
	if now := time.Now(); force || now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.drawn = true
		if p.total > 0 {
			const width = 30
			fill := width * p.n / p.total
			fmt.Fprintf(p.w, "\r\033[K%s [%s%s] %d/%d", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.n, p.total)
			return
		}
		fmt.Fprintf(p.w, "\r\033[K%s: %d users", p.label, p.n)
	}
}
