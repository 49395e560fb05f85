package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// transcriptEnv names a file to which the cbk-sync test binary copies everything it
// writes to stdout and stderr, so that a test can check all output for secrets.
const transcriptEnv = "CBK_SYNC_TEST_TRANSCRIPT"

// secretRE matches a ChatBotKit secret: the emulator's API tokens and created tokens.
var secretRE = regexp.MustCompile(`sk-[0-9a-f]{64}`)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cbk-sync": func() { os.Exit(mainForTest(os.Args[1:])) },
	})
}

// mainForTest is Main with stdout and stderr also copied to the transcript. The
// stdout of a run with --secrets-out - is the secrets sink itself, so it is left out.
func mainForTest(args []string) int {
	catchSIGPIPE()
	in, release := notifyInterrupts()
	defer release()
	useTestDNS()
	streams := SystemStreams()
	if path := os.Getenv(transcriptEnv); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err == nil {
			defer f.Close()
			if !hasSecretsToStdout(args) {
				streams.Out = io.MultiWriter(streams.Out, f)
			}
			streams.ErrOut = io.MultiWriter(streams.ErrOut, f)
		}
	}
	code := runInterruptible(in, args, streams)
	if code != 0 {
		// testscript's exec checks only zero or not; the exit codes are part of the
		// contract, so the test binary states its code for scripts to assert on.
		fmt.Fprintf(streams.ErrOut, "cbk-sync-test: exit %d\n", code)
	}
	return code
}

func hasSecretsToStdout(args []string) bool {
	for i, a := range args {
		if a == "--secrets-out=-" || (a == "--secrets-out" && i+1 < len(args) && args[i+1] == "-") {
			return true
		}
	}
	return false
}

// TestScripts runs the end-to-end scripts in testdata/script against the real command
// and the embedded emulator. After each script, no output and no file it left (but the
// secrets sinks, named *secrets*) may contain a secret.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(filepath.Join("..", "..", "testdata", "script")))
}

// scriptParams runs the scripts of dir as TestScripts does.
func scriptParams(dir string) testscript.Params {
	return testscript.Params{
		Dir: dir,
		Setup: func(env *testscript.Env) error {
			transcript := filepath.Join(env.WorkDir, ".transcript")
			env.Setenv(transcriptEnv, transcript)
			env.Setenv("NO_COLOR", "1")
			for _, k := range tokenEnvVars {
				env.Setenv(k, "")
			}
			env.Values[emuKey{}] = newEmuHandle()
			env.Values[procKey{}] = map[string]*procRun{}
			env.Defer(func() { checkNoSecrets(env.T(), env.WorkDir) })
			return nil
		},
		Cmds:                map[string]func(ts *testscript.TestScript, neg bool, args []string){"emu": cmdEmu, "unreachable": cmdUnreachable, "pty": cmdPty, "jsonlines": cmdJSONLines, "proc": cmdProc},
		RequireExplicitExec: true,
	}
}

func checkNoSecrets(t testscript.T, dir string) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.Contains(d.Name(), "secrets") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && secretRE.Match(b) {
			t.Fatal("a secret leaked into " + path)
		}
		return nil
	})
}

// cmdJSONLines implements the script command
//
//	jsonlines FILE
//
// which fails unless every line of FILE is a JSON object with "time", "level" and
// "msg" (the --log-format json contract); the test binary's own "cbk-sync-test: exit
// N" line is skipped. With !, it fails if every line is.
func cmdJSONLines(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: jsonlines FILE")
	}
	bad := ""
	n := 0
	for _, line := range strings.Split(strings.TrimRight(ts.ReadFile(args[0]), "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "cbk-sync-test: exit ") {
			continue
		}
		n++
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			bad = fmt.Sprintf("not JSON: %q (%v)", line, err)
			break
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				bad = fmt.Sprintf("no %q key: %s", k, line)
			}
		}
	}
	if n == 0 {
		bad = "no line at all"
	}
	if (bad == "") == neg {
		if neg {
			ts.Fatalf("jsonlines %s: every line is a JSON record", args[0])
		}
		ts.Fatalf("jsonlines %s: %s", args[0], bad)
	}
}
