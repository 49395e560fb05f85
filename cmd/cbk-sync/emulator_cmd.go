package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
)

// EmulatorCmd serves the embedded Partner API emulator.
type EmulatorCmd struct {
	Listen           string `default:"127.0.0.1:8787" help:"Address to listen on (loopback unless --allow-non-loopback)."`
	State            string `type:"path" placeholder:"FILE" help:"Persist the state to FILE (JSON, atomic writes); memory only when absent."`
	APITokenFile     string `name:"api-token-file" type:"path" help:"File holding the bearer token clients must send (else CHATBOTKIT_API_TOKEN, CHATBOTKIT_API_SECRET, CHATBOTKIT_API_KEY)."`
	AllowNonLoopback bool   `name:"allow-non-loopback" help:"Allow listening on an address that is not loopback."`
	Paths            string `enum:"partner,user,both" default:"partner" help:"API path family served: partner (/v1/partner/user/..., the hosted API), user (/api/v1/user/..., self-hosted) or both."`

	Latency      time.Duration `help:"Latency added to every request, before it is acted on."`
	AnswerDelay  time.Duration `name:"answer-delay" help:"Wait between making a change and answering it (a client killed meanwhile never learns what was done)."`
	FailRate     float64       `name:"fail-rate" help:"Fraction of requests answered 5xx without acting."`
	ThrottleRate float64       `name:"throttle-rate" help:"Fraction of requests answered 429 TOO_MANY_REQUESTS."`
	RetryAfter   time.Duration `name:"retry-after" help:"Send Retry-After with injected 429s (0 = no header)."`
	LostRate     float64       `name:"lost-rate" help:"Fraction of writes that are made and then lose their answer (connection dropped)."`
	BadBodyRate  float64       `name:"bad-body-rate" help:"Fraction of reads answered 200 with an error in a streamed body."`
	UserQuota    int           `name:"user-quota" help:"Refuse user creates beyond this many users with 429 LIMITS_REACHED (0 = none)."`
	PollLimit    int           `name:"poll-limit" default:"1000" help:"The poll limit: list requests (a page, or a JSONL stream) admitted per --poll-window, account-wide; beyond it 429 LIMITS_REACHED rate/poll (0 = none)."`
	PollWindow   time.Duration `name:"poll-window" default:"60s" help:"The poll limit's sliding window."`
	DeleteRate   float64       `name:"delete-rate" help:"Concurrent writer: fraction of list pages (users and tokens, also inside streams) after which the page's last item, the next cursor, is deleted."`
	DeleteEvery  int           `name:"delete-every" placeholder:"N" help:"Concurrent writer: also delete the last user of every N-th user-list page served (deterministic; 0 = never)."`
	DeleteMax    int           `name:"delete-max" placeholder:"N" help:"Concurrent writer: stop after N deletes (0 = no limit)."`
	StreamPage   int           `name:"stream-page-size" default:"100" placeholder:"N" help:"Page size a JSONL stream is read in internally (each page starts after the previous one's last item)."`
	Seed         int64         `help:"Seed of the fault injection, so a run can be repeated."`
}

// Validate checks rates and the listen address.
func (c *EmulatorCmd) Validate() error {
	for name, r := range map[string]float64{"--fail-rate": c.FailRate, "--throttle-rate": c.ThrottleRate, "--lost-rate": c.LostRate, "--bad-body-rate": c.BadBodyRate, "--delete-rate": c.DeleteRate} {
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("%s must be between 0 and 1 (got %g)", name, r)
		}
	}
	if c.PollLimit < 0 {
		return fmt.Errorf("--poll-limit must be 0 (none) or positive (got %d)", c.PollLimit)
	}
	if c.PollWindow <= 0 {
		return fmt.Errorf("--poll-window must be positive (got %s)", c.PollWindow)
	}
	for name, n := range map[string]int{"--delete-every": c.DeleteEvery, "--delete-max": c.DeleteMax} {
		if n < 0 {
			return fmt.Errorf("%s must be 0 or more (got %d)", name, n)
		}
	}
	if c.StreamPage < 1 || c.StreamPage > 100 {
		return fmt.Errorf("--stream-page-size must be between 1 and 100 (got %d)", c.StreamPage)
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v (use HOST:PORT, e.g. 127.0.0.1:8787)", c.Listen, err)
	}
	if !c.AllowNonLoopback && !client.IsLoopback(host) {
		return fmt.Errorf("--listen %q is not a loopback address; pass --allow-non-loopback to serve it anyway", c.Listen)
	}
	return nil
}

// Run serves until interrupted, then saves the state.
func (c *EmulatorCmd) Run(ctx context.Context, env *Env) error {
	flags := APIFlags{APITokenFile: c.APITokenFile}
	token, err := flags.readToken(env)
	if err != nil {
		return fmt.Errorf("the emulator needs the token its clients will send: %w", err)
	}
	env.redact.Add(token.Reveal())
	emu, err := emulator.New(emulator.Options{
		Token:          token.Reveal(),
		StatePath:      c.State,
		SaveOnWrite:    c.State != "",
		StreamPageSize: c.StreamPage,
		Paths:          emulator.Paths(c.Paths),
		Faults: emulator.Faults{
			Seed: c.Seed, Latency: c.Latency, AnswerDelay: c.AnswerDelay, Rate5xx: c.FailRate, Rate429: c.ThrottleRate,
			RetryAfter: c.RetryAfter, RateLost: c.LostRate, RateBadBody: c.BadBodyRate, UserQuota: c.UserQuota,
			PollLimit: pollLimitFlag(c.PollLimit), PollWindow: c.PollWindow,
			DeleteRate: c.DeleteRate, DeleteEvery: c.DeleteEvery, DeleteMax: c.DeleteMax,
		},
	})
	if err != nil {
		return err
	}
	url, stop, err := emulator.Listen(c.Listen, emu)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.Listen, err)
	}
	fmt.Fprintf(env.IO.Out, "cbk-sync emulator listening on %s\n", url)
	if c.State != "" {
		env.Log.Info("emulator state", "file", c.State)
	}
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(shutdown); err != nil {
		env.Log.Warn("emulator shutdown", "error", err)
	}
	return emu.Close()
}

// pollLimitFlag maps --poll-limit (0 = none) to emulator.Faults.PollLimit (0 = the
// default, negative = none).
func pollLimitFlag(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
