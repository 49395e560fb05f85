package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
)

// statusLine keeps one redrawable line (the progress bar) at the bottom of a
// terminal's stderr. Everything else written to stderr goes through it, so log lines
// and prompts appear above the bar instead of being glued to it.
type statusLine struct {
	mu   sync.Mutex
	w    io.Writer
	line string
}

const clearLine = "\r\033[K"

// Write writes p above the status line.
func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != "" {
		io.WriteString(s.w, clearLine)
	}
	n, err := s.w.Write(p)
	if s.line != "" {
		io.WriteString(s.w, s.line)
	}
	return n, err
}

func (s *statusLine) set(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.line = line
	io.WriteString(s.w, clearLine+line)
}

func (s *statusLine) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != "" {
		io.WriteString(s.w, clearLine)
		s.line = ""
	}
}

// progress draws a progress bar on the status line when stderr is a terminal, and
// does nothing otherwise (CI logs stay clean).
type progress struct {
	mu       sync.Mutex
	status   *statusLine
	label    string
	n, total int
	last     time.Time
	// polls, when set, adds the poll budget to the line, and an ETA while the poll
	// window holds the reading back; tick redraws the line meanwhile.
	polls func() client.PollStatus
	tick  chan struct{}
}

func newProgress(env *Env, label string) *progress {
	p := &progress{label: label}
	if env.IO.ProgressOK() && !env.Globals.Quiet && env.view.Bars() {
		p.status = env.IO.status
	}
	return p
}

// add counts n more items of an unknown total.
func (p *progress) add(n int) {
	if p.status == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	p.draw()
}

// set records done of total.
func (p *progress) set(done, total int) {
	if p.status == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n, p.total = done, total
	p.draw()
}

// showPolls adds the poll budget to the line: "polls 480/500 per 10s", and while the
// window holds polls back, how long until the next one may go. The line is redrawn
// every half second while shown, since a wait brings no other progress to draw.
func (p *progress) showPolls(status func() client.PollStatus) {
	if p.status == nil {
		return
	}
	p.mu.Lock()
	p.polls, p.tick = status, make(chan struct{})
	p.mu.Unlock()
	go func(stop chan struct{}) {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.last = time.Time{}
				p.draw()
				p.mu.Unlock()
			}
		}
	}(p.tick)
}

// done removes the bar.
func (p *progress) done() {
	if p.status != nil {
		p.mu.Lock()
		if p.tick != nil {
			close(p.tick)
			p.tick = nil
		}
		p.polls = nil
		p.mu.Unlock()
		p.status.clear()
	}
}

// pollText is the poll part of the line, "" when there is none to show.
func (p *progress) pollText() string {
	if p.polls == nil {
		return ""
	}
	st := p.polls()
	budget := "?"
	if st.Budget > 0 {
		budget = fmt.Sprint(st.Budget)
	}
	text := fmt.Sprintf(" · polls %d/%s per %s", st.Live, budget, st.Window)
	if st.Waiting {
		if st.Next > 0 {
			text += fmt.Sprintf(" · waiting for the poll window, next in %s", st.Next.Round(100*time.Millisecond))
		} else {
			text += " · waiting for the poll window"
		}
	}
	return text
}

func (p *progress) draw() {
	// Redraw at most ten times a second: a terminal is slower than the API.
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && p.n != p.total {
		return
	}
	p.last = now
	if p.total > 0 {
		const width = 30
		fill := width * p.n / p.total
		p.status.set(fmt.Sprintf("%s [%s%s] %d/%d%s", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.n, p.total, p.pollText()))
		return
	}
	p.status.set(fmt.Sprintf("%s: %d users%s", p.label, p.n, p.pollText()))
}
