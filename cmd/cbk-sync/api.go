package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/lease"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// tokenEnvVars are read in this order when --api-token-file is not given: the
// documented one first, then the older and the Terraform spellings.
var tokenEnvVars = []string{"CHATBOTKIT_API_TOKEN", "CHATBOTKIT_API_SECRET", "CHATBOTKIT_API_KEY"}

// defaultAPIURL is the hosted Partner API.
const defaultAPIURL = "https://api.chatbotkit.com"

// APIFlags are the flags of every command that talks to the Partner API.
type APIFlags struct {
	APIURL       string        `name:"api-url" env:"CHATBOTKIT_API_URL" default:"${default_api_url}" help:"Partner API base URL (http:// only for loopback)."`
	APITokenFile string        `name:"api-token-file" type:"path" help:"File holding the API token (else CHATBOTKIT_API_TOKEN, CHATBOTKIT_API_SECRET, CHATBOTKIT_API_KEY)."`
	Emulator     string        `name:"emulator" type:"path" placeholder:"FILE" help:"Use an in-process emulator whose state lives in FILE instead of the network (no credentials needed); FILE must exist unless --emulator-init."`
	EmulatorInit bool          `name:"emulator-init" help:"With --emulator: a missing FILE is an empty account (else it is an error, so a typo cannot plan to create everyone)."`
	Parallelism  int           `default:"8" help:"Concurrent API requests and users applied in parallel."`
	RPS          float64       `name:"rps" default:"0" help:"Client-side cap on requests per second (0 = none)."`
	Timeout      time.Duration `default:"30s" help:"Timeout of one API request."`
	Listing      string        `name:"listing" env:"CBK_SYNC_LISTING" enum:"jsonl,paged" default:"jsonl" placeholder:"jsonl|paged" help:"How users are listed: jsonl (one streamed answer: one poll) or paged (one poll per 100 users). Token lists are paged either way."`
	// JSONL is the v1 spelling of --listing jsonl, now the default; hidden, kept so
	// that scripts written for v1 still run.
	JSONL        bool          `name:"jsonl" hidden:""`
	APIPaths     string        `name:"api-paths" env:"CBK_SYNC_API_PATHS" default:"auto" placeholder:"auto|partner|user" help:"API path family: partner (/v1/partner/user/..., the hosted API), user (/api/v1/user/..., self-hosted), or auto (found on the first request; nothing is written before)."`
	RetryTimeout time.Duration `name:"retry-timeout" default:"2m" help:"How long one read (or update, delete) may keep retrying network errors, 5xx and 429s."`
	PollBudget   int           `name:"poll-budget" default:"0" placeholder:"N" help:"Polls (list requests: a page, or a JSONL stream) the account allows per --poll-window; never exceeded. 0 = learn it at the first poll-limit rejection."`
	PollWindow   time.Duration `name:"poll-window" default:"60s" help:"The poll limit's sliding window (the platform's is 60s; change it only for a test server)."`
	// RetryBase is the first retry backoff; hidden, for tests that inject many faults.
	RetryBase time.Duration `name:"retry-base" hidden:"" default:"250ms"`
	// PageSize is the take of paged lists; hidden, for tests that cross page
	// boundaries with few users.
	PageSize int `name:"page-size" hidden:"" default:"100"`
}

// Bounds of the timing flags: below a millisecond nothing can answer, and a run
// must never wait longer than these on one request, one retry budget or one
// rate-limited call (--rps 1e-9 would wait 30 years).
const (
	minDuration     = time.Millisecond
	maxTimeout      = 10 * time.Minute
	maxRetryTimeout = time.Hour
	minRPS          = 0.1 // one request every 10 s
	maxRPS          = 1e6
)

// Validate checks flag values before anything runs.
func (f *APIFlags) Validate() error {
	if f.EmulatorInit && f.Emulator == "" {
		return fmt.Errorf("--emulator-init needs --emulator FILE")
	}
	if f.Emulator != "" && f.APIURL != "" && f.APIURL != defaultAPIURL {
		return fmt.Errorf("--emulator and --api-url (or CHATBOTKIT_API_URL=%s) both say where the API is: the emulator would be used and the URL ignored; pass one of them", f.APIURL)
	}
	if f.Parallelism < 1 {
		return fmt.Errorf("--parallelism must be at least 1 (got %d)", f.Parallelism)
	}
	if f.RPS != 0 && !(f.RPS >= minRPS && f.RPS <= maxRPS) { // also refuses NaN and ±Inf
		return fmt.Errorf("--rps must be 0 (no cap) or between %g and %g requests per second (got %g)", minRPS, maxRPS, f.RPS)
	}
	for _, d := range []struct {
		flag     string
		v, limit time.Duration
	}{{"--timeout", f.Timeout, maxTimeout}, {"--retry-timeout", f.RetryTimeout, maxRetryTimeout}} {
		if d.v < minDuration || d.v > d.limit {
			return fmt.Errorf("%s must be between %s and %s (got %s)", d.flag, minDuration, d.limit, d.v)
		}
	}
	if f.PollBudget < 0 {
		return fmt.Errorf("--poll-budget must be 0 (learn it) or positive (got %d)", f.PollBudget)
	}
	if f.PollWindow < time.Millisecond || f.PollWindow > time.Hour {
		return fmt.Errorf("--poll-window must be between 1ms and 1h (got %s)", f.PollWindow)
	}
	if f.PageSize < 1 || f.PageSize > 100 {
		return fmt.Errorf("--page-size must be between 1 and 100 (got %d)", f.PageSize)
	}
	if _, err := client.ParsePathFamily(f.APIPaths); err != nil {
		return fmt.Errorf("--api-paths (or CBK_SYNC_API_PATHS): %w", err)
	}
	return nil
}

// inputs are the files the API flags read, besides the given ones (configuration
// files, a saved plan), which no output may name.
func (f *APIFlags) inputs(flag string, files ...string) []input {
	in := []input{{flag: "--api-token-file", path: f.APITokenFile}}
	for _, p := range files {
		in = append(in, input{flag: flag, path: p})
	}
	return in
}

// emulatorOutput is the --emulator state file, which an apply rewrites.
func (f *APIFlags) emulatorOutput() output { return output{flag: "--emulator", path: f.Emulator} }

// session is an open connection to the Partner API (or to an in-process emulator),
// with a read-only client for planning and a writing one for applying.
type session struct {
	reader  *client.Client
	writer  *client.Client
	emu     *emulator.Emulator
	emuPath string
	stop    func(context.Context) error
	saved   bool // the in-process emulator's state was saved once (after an apply)
	opts    client.Options
	// lease is the account lock's own client (leaseClient), nil until a lock is taken.
	lease *client.Client
	// unlocked: the account is at its user quota and the run goes on without the lock
	// (apply.Options.Unlocked).
	unlocked bool
	// adopting: the run holds the adoption lease (state.AdoptionScope) besides its
	// owner's, or the user quota refused it, so its plan may adopt users (lockAccount).
	adopting bool
}

// open connects; the writer is nil unless write is true, so a read-only command
// cannot write even by mistake (the reader is in dry-run mode).
func (f *APIFlags) open(env *Env, write bool) (*session, error) {
	s := &session{}
	baseURL := f.APIURL
	var token state.Secret
	if f.Emulator != "" {
		// A random token per run: the emulator checks it like the real API does, and
		// nothing secret is needed from the user.
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		token = state.Secret("sk-" + hex.EncodeToString(b))
		if _, err := os.Stat(f.Emulator); errors.Is(err, fs.ErrNotExist) && !f.EmulatorInit {
			return nil, fmt.Errorf("--emulator %s: no such file; pass --emulator-init to start from an empty account there", f.Emulator)
		}
		emu, err := emulator.New(emulator.Options{Token: token.Reveal(), StatePath: f.Emulator})
		if err != nil {
			return nil, fmt.Errorf("--emulator %s: %w", f.Emulator, err)
		}
		url, stop, err := emulator.Listen("127.0.0.1:0", emu)
		if err != nil {
			return nil, fmt.Errorf("--emulator: %w", err)
		}
		s.emu, s.emuPath, s.stop, baseURL = emu, f.Emulator, stop, url
	} else {
		t, err := f.readToken(env)
		if err != nil {
			return nil, err
		}
		token = t
	}
	env.redact.Add(token.Reveal())
	paths, err := client.ParsePathFamily(f.APIPaths)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("--api-paths: %w", err)
	}
	opts := client.Options{
		Paths:           paths,
		PollBudget:      f.PollBudget,
		PollWindow:      f.PollWindow,
		BaseURL:         baseURL,
		Token:           token,
		Redactor:        env.redact,
		UserAgent:       "cbk-sync/" + buildVersion(),
		MaxConns:        f.Parallelism,
		RPS:             f.RPS,
		Timeout:         f.Timeout,
		JSONL:           f.JSONL || f.Listing == "jsonl",
		PageSize:        f.PageSize,
		Logger:          env.Log,
		RetryBase:       f.RetryBase,
		RetryMaxElapsed: f.RetryTimeout,
	}
	if !write {
		opts.DryRun = true
	}
	c, err := client.New(opts)
	if err != nil {
		s.close()
		return nil, apiURLError(err)
	}
	s.opts = opts
	// The reader shares the writer's connections, rate cap and 429 pause, and cannot
	// write: planning goes through it even in sync.
	s.reader = c.ReadOnly()
	if write {
		s.writer = c
	}
	env.facts.session = s
	return s, nil
}

func apiURLError(err error) error {
	if errors.Is(err, client.ErrInsecureURL) {
		return fmt.Errorf("--api-url: %w", err)
	}
	return err
}

// close stops the in-process emulator's server, if any. Its state is saved by save,
// after applying, so a read-only command never rewrites the state file.
func (s *session) close() {
	if s.stop != nil {
		_ = s.stop(context.Background()) // nothing of the run depends on a clean shutdown
	}
}

// save writes the in-process emulator's state to its file after an apply.
func (s *session) save() error {
	if s.emu == nil {
		return nil
	}
	if err := s.emu.Save(); err != nil {
		return fmt.Errorf("--emulator %s: the changes were made but could not be saved: %w", s.emuPath, err)
	}
	s.saved = true
	return nil
}

// stats returns the API calls per operation and the retries of the run (the reader
// and the writer share their counters; the lock's client has its own).
func (s *session) stats() (map[string]int64, int64) {
	st := s.reader.Stats()
	if s.lease != nil {
		ls := s.lease.Stats()
		for op, n := range ls.Calls {
			st.Calls[op] += n
		}
		st.Retries += ls.Retries
	}
	return st.Calls, st.Retries
}

// leaseClient returns a client for the account lock alone: its own connection, retries
// and 429 pause, so that nothing the run queues or backs off delays a renewal, and a
// transport that notes the server's clock, by which leases expire.
func (s *session) leaseClient() (*client.Client, *lease.ServerTime, error) {
	o := s.opts
	o.MaxConns = 1
	o.Paths = s.reader.Paths() // found by the plan's reads, when it did any
	o.DryRun = false
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxConnsPerHost = 2
	clock := &lease.ServerTime{Base: base}
	o.HTTPClient = &http.Client{Transport: clock}
	c, err := client.New(o)
	if err != nil {
		return nil, nil, apiURLError(err)
	}
	s.lease = c
	return c, clock, nil
}

// maxTokenFile bounds the token file: an API token is under 100 bytes, so anything
// much larger is the wrong file (and /dev/zero must not fill the memory).
const maxTokenFile = 4 << 10

// readTokenFile reads a token file, which must be a regular file of at most
// maxTokenFile bytes. It is opened non-blocking and checked after opening, so a FIFO
// named by mistake is refused instead of hanging the run.
func readTokenFile(path string) ([]byte, error) {
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is a %s, not a regular file: put the token in a file", fileKind(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, unwrapPath(err)
	}
	if len(b) > maxTokenFile {
		return nil, fmt.Errorf("is larger than %d KiB, which no API token is: name the file that holds only the token", maxTokenFile>>10)
	}
	return b, nil
}

// readToken finds the API token: --api-token-file, else the environment.
func (f *APIFlags) readToken(env *Env) (state.Secret, error) {
	if f.APITokenFile != "" {
		b, err := readTokenFile(f.APITokenFile)
		if err != nil {
			return "", fmt.Errorf("--api-token-file %s: %w", f.APITokenFile, err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("--api-token-file %s is empty: put the API token in it", f.APITokenFile)
		}
		return state.Secret(t), nil
	}
	for _, k := range tokenEnvVars {
		if v, ok := env.IO.lookupEnv(k); ok && strings.TrimSpace(v) != "" {
			return state.Secret(strings.TrimSpace(v)), nil
		}
	}
	return "", fmt.Errorf("no API token: pass --api-token-file FILE or set CHATBOTKIT_API_TOKEN (or use --emulator FILE to try cbk-sync without an account)")
}
