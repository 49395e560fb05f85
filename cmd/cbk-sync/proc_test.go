//go:build unix

package main

import (
	"bytes"
	"errors"
	"os/exec"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// procKey finds a script's processes started by proc in testscript.Env.Values.
type procKey struct{}

type procRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
}

var procSignals = map[string]syscall.Signal{"STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT, "KILL": syscall.SIGKILL, "INT": syscall.SIGINT}

// cmdProc implements the script command
//
//	proc start NAME PROG [ARGS...]   start PROG in the background as NAME
//	proc signal NAME STOP|CONT|KILL|INT
//	proc wait NAME                   wait for NAME; its output becomes stdout and
//	                                 stderr; fails if it exited non-zero (! to expect that)
//
// testscript's own background commands cannot be stopped and continued, which the
// lock's fencing tests need (a holder paused past its lease, as by Ctrl-Z or a
// suspended VM). Each wait is bounded by a minute, against a hung test.
func cmdProc(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: proc start|signal|wait NAME ...")
	}
	procs, _ := ts.Value(procKey{}).(map[string]*procRun)
	name := args[1]
	switch args[0] {
	case "start":
		if len(args) < 3 {
			ts.Fatalf("usage: proc start NAME PROG [ARGS...]")
		}
		path, err := exec.LookPath(args[2])
		ts.Check(err)
		p := &procRun{cmd: exec.Command(path, args[3:]...), done: make(chan error, 1)}
		p.cmd.Dir = ts.Getenv("WORK")
		for _, k := range ptyEnv {
			p.cmd.Env = append(p.cmd.Env, k+"="+ts.Getenv(k))
		}
		p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
		ts.Check(p.cmd.Start())
		go func() { p.done <- p.cmd.Wait() }()
		procs[name] = p
		ts.Defer(func() {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
		})
	case "signal":
		p, sig := procs[name], procSignals[args[len(args)-1]]
		if p == nil || sig == 0 || len(args) != 3 {
			ts.Fatalf("proc signal: no process %q, or no signal %q", name, args[len(args)-1])
		}
		ts.Check(p.cmd.Process.Signal(sig))
	case "wait":
		p := procs[name]
		if p == nil {
			ts.Fatalf("proc wait: no process %q", name)
		}
		var err error
		select {
		case err = <-p.done:
		case <-time.After(time.Minute): // a bound against a hung test, not a synchronisation
			ts.Fatalf("proc wait: %s did not exit within a minute", name)
		}
		_, _ = ts.Stdout().Write(p.stdout.Bytes())
		_, _ = ts.Stderr().Write(p.stderr.Bytes())
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			ts.Fatalf("proc wait: %v", err)
		}
		if (err != nil) != neg {
			ts.Fatalf("proc wait %s: exit error %v", name, err)
		}
	default:
		ts.Fatalf("proc: unknown subcommand %q", args[0])
	}
}
