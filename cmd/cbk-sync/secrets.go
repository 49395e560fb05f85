package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"filippo.io/age"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/plan"
)

// agePrefix marks an age destination in --secrets-out.
const agePrefix = "age:"

// secretsSink is the secrets destination the flags chose: what the plan and the report
// say about it, and how to open it.
type secretsSink struct {
	dest plan.SecretsDestination
	// sink is the age or exec sink, checked and ready before any API call; nil for the
	// JSON-lines file and stdout, which are opened only when the plan creates tokens.
	sink apply.SecretSink
}

// prepareSink checks the secrets flags and, for age and exec, makes the sink ready: the
// recipients parse, the directory is writable, the command is found. It runs before any
// API call, so an unusable destination changes nothing. It returns nil when no
// destination was given.
func (f *ApplyFlags) prepareSink(env *Env) (*secretsSink, error) {
	isAge := strings.HasPrefix(f.SecretsOut, agePrefix)
	switch {
	case f.SecretsOut != "" && f.SecretsExec != "":
		return nil, errors.New("--secrets-out and --secrets-exec both given: secrets go to one destination; keep one")
	case !isAge && (len(f.AgeRecipients) > 0 || len(f.AgeRecipientsFiles) > 0):
		return nil, fmt.Errorf("--age-recipient and --age-recipients-file need --secrets-out %sDIR", agePrefix)
	case f.SecretsExecTimeout <= 0:
		return nil, errors.New("--secrets-exec-timeout must be greater than zero, such as 30s or 2m")
	}
	switch {
	case isAge:
		return f.prepareAge()
	case f.SecretsExec != "":
		sink, err := apply.NewExecSink(f.SecretsExec, apply.ExecOptions{
			Timeout: f.SecretsExecTimeout, DropEnv: tokenEnvVars, Logger: env.Log, Redactor: env.redact,
		})
		if err != nil {
			return nil, fmt.Errorf("--secrets-exec: %w", err)
		}
		return &secretsSink{dest: plan.SecretsDestination{Kind: "exec", Location: f.SecretsExec}, sink: sink}, nil
	case f.SecretsOut == "-":
		return &secretsSink{dest: plan.SecretsDestination{Kind: "stdout", Location: "-"}}, nil
	case f.SecretsOut != "":
		return &secretsSink{dest: plan.SecretsDestination{Kind: "file", Location: f.SecretsOut}}, nil
	}
	return nil, nil
}

func (f *ApplyFlags) prepareAge() (*secretsSink, error) {
	dir := strings.TrimPrefix(f.SecretsOut, agePrefix)
	var recipients []age.Recipient
	for _, r := range f.AgeRecipients {
		rs, err := apply.ParseAgeRecipients(r, "--age-recipient")
		if err != nil {
			return nil, err
		}
		recipients = append(recipients, rs...)
	}
	for _, path := range f.AgeRecipientsFiles {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--age-recipients-file: %w", err)
		}
		rs, err := apply.ParseAgeRecipients(string(b), path)
		if err != nil {
			return nil, fmt.Errorf("--age-recipients-file %w", err)
		}
		if len(rs) == 0 {
			return nil, fmt.Errorf("--age-recipients-file %s: no recipient in the file", path)
		}
		recipients = append(recipients, rs...)
	}
	sink, err := apply.OpenAgeDir(dir, recipients)
	if err != nil {
		return nil, fmt.Errorf("--secrets-out %s: %w", f.SecretsOut, err)
	}
	return &secretsSink{dest: plan.SecretsDestination{Kind: "age", Location: dir, Recipients: sink.Recipients()}, sink: sink}, nil
}

// open returns the sink to deliver to, and what closes it. A write to stdout that its
// reader does not take is given up when calls ends (see interruptibleWriter).
func (s *secretsSink) open(calls context.Context, env *Env, path string) (apply.SecretSink, func() error, error) {
	if s.sink != nil {
		return s.sink, func() error { return nil }, nil
	}
	fs, err := apply.OpenSecretsFile(path, &interruptibleWriter{ctx: calls, w: env.IO.Out})
	if err != nil {
		return nil, nil, fmt.Errorf("--secrets-out: %w", err)
	}
	return fs, fs.Close, nil
}
