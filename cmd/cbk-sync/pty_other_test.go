//go:build !unix

package main

import "github.com/rogpeppe/go-internal/testscript"

func cmdPty(ts *testscript.TestScript, neg bool, args []string) {
	ts.Skip("pty: no pseudo-terminals on this platform")
}
