package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// IOStreams is the one place that decides about terminals, colour and prompting; it is
// passed to every command instead of reading os.Stdout and friends directly.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	inTTY, outTTY, errTTY bool
	noColorEnv            bool
	status                *statusLine // non-nil when stderr is a terminal
	lookupEnv             func(string) (string, bool)
}

// SystemStreams returns streams over the process's stdin, stdout and stderr.
func SystemStreams() *IOStreams {
	isTTY := func(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
	_, noColor := os.LookupEnv("NO_COLOR")
	s := &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		inTTY: isTTY(os.Stdin), outTTY: isTTY(os.Stdout),
		noColorEnv: noColor,
		lookupEnv:  os.LookupEnv,
	}
	s.SetTTY(s.inTTY, s.outTTY, isTTY(os.Stderr))
	return s
}

// TestStreams returns streams over buffers, with no terminal, and env as the
// environment.
func TestStreams(stdin string, env map[string]string) (*IOStreams, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	_, noColor := env["NO_COLOR"]
	return &IOStreams{
		In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut,
		noColorEnv: noColor,
		lookupEnv:  lookup,
	}, &out, &errOut
}

// ColorOut reports whether the plan on stdout may be coloured.
func (s *IOStreams) ColorOut(noColorFlag bool) bool {
	return s.outTTY && !s.noColorEnv && !noColorFlag
}

// ColorErr reports whether stderr may be coloured.
func (s *IOStreams) ColorErr(noColorFlag bool) bool {
	return s.errTTY && !s.noColorEnv && !noColorFlag
}

// CanPrompt reports whether a person can answer a question: stdin and stderr are
// terminals.
func (s *IOStreams) CanPrompt() bool { return s.inTTY && s.errTTY }

// ProgressOK reports whether a progress bar may be drawn on stderr.
func (s *IOStreams) ProgressOK() bool { return s.errTTY }

// Confirm asks on stderr and reads one line; only the exact answer "yes" proceeds.
// An interrupt (ctx cancelled) answers "no" at once.
func (s *IOStreams) Confirm(ctx context.Context, question string) (bool, error) {
	fmt.Fprintf(s.ErrOut, "%s\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ", question)
	type answer struct {
		line string
		err  error
	}
	// The read cannot be cancelled; on an interrupt it is left behind, and the
	// process exits soon after.
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(s.In).ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.ErrOut)
		return false, nil
	case a := <-ch:
		if a.err != nil && !errors.Is(a.err, io.EOF) {
			return false, a.err
		}
		return strings.TrimSpace(a.line) == "yes", nil
	}
}

// SetTTY marks the streams as terminals or not. When stderr is one, everything
// written to it goes through the status line that holds the progress bar.
func (s *IOStreams) SetTTY(in, out, err bool) {
	s.inTTY, s.outTTY, s.errTTY = in, out, err
	if err && s.status == nil {
		s.status = &statusLine{w: s.ErrOut}
		s.ErrOut = s.status
	}
}
