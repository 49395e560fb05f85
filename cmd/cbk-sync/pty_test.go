//go:build unix

package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
	"github.com/rogpeppe/go-internal/testscript"
)

// ptyEnv are the script variables passed to a program run under a terminal.
var ptyEnv = append([]string{"CHATBOTKIT_API_URL", "CHATBOTKIT_API_TOKEN", transcriptEnv, "NO_COLOR", "HOME", "TMPDIR", "PATH"}, tokenEnvVars...)

// cmdPty implements the script command
//
//	pty SESSION PROG [ARGS...]
//
// which runs PROG in a pseudo-terminal (its stdin, stdout and stderr, and its
// controlling terminal, so Ctrl-C sends SIGINT as it does for a person) and plays the
// steps of the file SESSION, one per line:
//
//	expect REGEXP   wait until the terminal output after the last match matches
//	send "TEXT"     type TEXT, a Go string literal ("yes\r"; "\x03" is Ctrl-C)
//	gate-wait       wait until the emulator's gate holds a request
//	gate-open       release the requests the gate holds
//	emu ARGS        the script command emu ARGS (arguments split at spaces)
//
// Each wait is bounded by a minute, against a hung test; nothing sleeps. The
// terminal's whole output becomes stdout; the command fails if PROG exits non-zero.
func cmdPty(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: pty SESSION PROG [ARGS...]")
	}
	steps := strings.Split(strings.TrimSpace(ts.ReadFile(args[0])), "\n")
	path, err := exec.LookPath(args[1])
	ts.Check(err)
	cmd := exec.Command(path, args[2:]...)
	cmd.Dir = ts.Getenv("WORK")
	for _, k := range ptyEnv {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	ts.Check(err)
	defer tty.Close()

	term := &terminal{}
	term.cond = sync.NewCond(&term.mu)
	go term.read(tty)
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	for _, step := range steps {
		verb, arg, _ := strings.Cut(strings.TrimSpace(step), " ")
		switch verb {
		case "expect":
			re, err := regexp.Compile(arg)
			ts.Check(err)
			if !term.expect(re, time.Minute) {
				ts.Logf("terminal output:\n%s", term.String())
				ts.Fatalf("pty: no %q on the terminal within a minute", arg)
			}
		case "send":
			text, err := strconv.Unquote(arg)
			ts.Check(err)
			_, err = tty.Write([]byte(text))
			ts.Check(err)
		case "gate-wait", "gate-open":
			cmdEmu(ts, false, []string{verb})
		case "emu":
			cmdEmu(ts, false, strings.Fields(arg))
		case "", "#":
		default:
			ts.Fatalf("pty: unknown step %q", step)
		}
	}
	var werr error
	select {
	case werr = <-waitDone:
	case <-time.After(time.Minute): // a bound against a hung test, not a synchronisation
		_ = cmd.Process.Kill()
		ts.Fatalf("pty: %s did not exit within a minute", args[1])
	}
	term.wait() // the output until the terminal closed
	_, _ = ts.Stdout().Write([]byte(term.String()))
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		ts.Fatalf("pty: %v", werr)
	}
	if (werr != nil) != neg {
		ts.Logf("terminal output:\n%s", term.String())
		if neg {
			ts.Fatalf("pty: unexpected success")
		}
		ts.Fatalf("pty: %v", werr)
	}
}

// terminal collects what a program writes to its terminal.
type terminal struct {
	mu     sync.Mutex
	cond   *sync.Cond
	out    strings.Builder
	from   int // where the next expect starts
	closed bool
}

func (t *terminal) read(f *os.File) {
	r := bufio.NewReader(f)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		t.mu.Lock()
		t.out.Write(buf[:n])
		if err != nil { // EIO once the program has exited and the terminal is closed
			t.closed = true
		}
		t.cond.Broadcast()
		t.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (t *terminal) expect(re *regexp.Regexp, limit time.Duration) bool {
	timer := time.AfterFunc(limit, func() {
		t.mu.Lock()
		t.closed = true // give up: wake the wait below
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if loc := re.FindStringIndex(t.out.String()[t.from:]); loc != nil {
			t.from += loc[1]
			return true
		}
		if t.closed {
			return false
		}
		t.cond.Wait()
	}
}

func (t *terminal) wait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for !t.closed {
		t.cond.Wait()
	}
}

func (t *terminal) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}
