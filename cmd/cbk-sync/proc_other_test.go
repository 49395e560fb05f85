//go:build !unix

package main

import "github.com/rogpeppe/go-internal/testscript"

func cmdProc(ts *testscript.TestScript, neg bool, args []string) {
	ts.Skip("proc: no SIGSTOP on this platform")
}

type procKey struct{}

type procRun struct{}
