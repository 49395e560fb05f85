// Package client is the ChatBotKit Partner API over HTTP: requests, pagination,
// retries, errors, and reading the actual state with the fewest calls.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Options configure a Client. The zero value of every field selects its default.
type Options struct {
	// BaseURL is the API root; default "https://api.chatbotkit.com". A path in it
	// (e.g. "http://host/api") is kept and the API paths are appended to it. http://
	// is refused with ErrInsecureURL unless the host is loopback.
	BaseURL string
	// Token is the bearer secret. It never appears in an error or log line.
	Token state.Secret
	// Redactor scrubs every error and log line the client makes; the token is added to
	// it. Nil means a redactor of its own, which knows only the token.
	Redactor *state.Redactor
	// UserAgent is sent as User-Agent; default "cbk-sync/dev".
	UserAgent string
	// HTTPClient replaces the default client, e.g. to serve the emulator in-process.
	// Its Timeout should be zero: the client applies Timeout per request itself.
	HTTPClient *http.Client
	// MaxConns bounds the parallel requests (the token lists of ReadActual); the
	// connections to the API host are one more, for a streamed user listing. Default 8.
	MaxConns int
	// RPS caps the request rate of this client; 0 means no cap.
	RPS float64
	// Timeout bounds one request; for a streamed (JSONL) list it bounds the wait for
	// the next line instead, so a long stream is not cut. Default 30s.
	Timeout time.Duration
	// RetryMaxElapsed bounds the total time one call spends retrying; default 2m.
	RetryMaxElapsed time.Duration
	// RetryBase is the first backoff; default 250ms.
	RetryBase time.Duration
	// DryRun makes every POST fail with ErrDryRun before it is sent.
	DryRun bool
	// JSONL lists the users with Accept: application/jsonl: one streamed answer (one
	// poll), the server paging internally. Token lists and lookups by email are paged.
	JSONL bool
	// PageSize is the take of a paged list, 1..100; default 100 (tests use less to
	// cross page boundaries with few items).
	PageSize int
	// Paths selects the API path family: PathsPartner (/v1/partner/user/..., the
	// hosted API and the SDKs), PathsUser (/api/v1/user/..., the self-hosted
	// platform) or PathsAuto (""), which finds it on the first request (see
	// PathFamily).
	Paths PathFamily
	// PollBudget is the number of polls (list requests: a page, or a whole JSONL
	// stream) the account allows per PollWindow; the client never sends more in any
	// trailing window. 0 learns it at the first poll-limit rejection.
	PollBudget int
	// PollWindow is the poll limit's sliding window; default 60s, the platform's.
	PollWindow time.Duration
	// Logger receives one debug line per request and a warning per retry; default: discard.
	Logger *slog.Logger
}

// Client calls the Partner API. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	token     state.Secret
	redact    *state.Redactor
	userAgent string
	hc        *http.Client
	maxConns  int
	timeout   time.Duration
	maxRetry  time.Duration
	retryBase time.Duration
	dryRun    bool
	jsonl     bool
	pageSize  int
	paths     PathFamily // as asked for; the family in use is in shared.family
	log       *slog.Logger
	writeGate func() error // asked before each write is sent (WithWriteGate); nil: none

	// The bounds of one listing (MaxListItems, MaxListBytes); tests lower them.
	maxListItems, maxListBytes int64
	clock                      clock
	jitter                     func(time.Duration) time.Duration // tests make it deterministic

	*shared
}

// shared is what a Client and the clients made from it by ReadOnly have in common:
// one account, so one rate cap, one pause after a 429, and one set of counters.
type shared struct {
	limiter *rate.Limiter // nil without an RPS cap
	// pause is when requests may be sent again after a 429: every request waits for
	// it, so one worker's 429 slows them all (each within its own retry deadline).
	pause pause

	// family is the path family in use (a PathFamily); PathsAuto until the first
	// answer tells. probe is held by the one request finding it out.
	family atomic.Int32
	probe  chan struct{}
	// reached is set by the first HTTP answer of the API, whatever its status: from
	// then on a refused connection or a failed DNS lookup is taken for a passing
	// failure of a host that exists, not for a wrong URL.
	reached atomic.Bool

	polls *pollScheduler

	calls     map[string]*atomic.Int64 // fixed set of ops, built in New: read-only map
	retries   atomic.Int64
	throttled atomic.Int64
}

// Operation names, as counted in Stats.Calls and used in errors.
const (
	OpUserList    = "user.list"
	OpUserFetch   = "user.fetch"
	OpUserCreate  = "user.create"
	OpUserUpdate  = "user.update"
	OpUserDelete  = "user.delete"
	OpTokenList   = "token.list"
	OpTokenCreate = "token.create"
	OpTokenUpdate = "token.update"
	OpTokenDelete = "token.delete"
)

var allOps = []string{OpUserList, OpUserFetch, OpUserCreate, OpUserUpdate, OpUserDelete,
	OpTokenList, OpTokenCreate, OpTokenUpdate, OpTokenDelete}

// Stats are the client's counters since New.
type Stats struct {
	// Calls counts the requests sent per operation, retries included.
	Calls map[string]int64
	// Retries counts the requests that repeated an earlier one.
	Retries int64
	// Throttled counts the 429 answers met (rate limit, poll limit and quota alike).
	Throttled int64
	// Polls counts the list requests sent (pages, JSONL streams), retries included;
	// PollRejections those the poll limit refused; PollWait the wall time during
	// which polls waited for the window; PollBudget the budget in force at the end
	// (given, or learned; 0 when never needed).
	Polls          int64
	PollRejections int64
	PollWait       time.Duration
	PollBudget     int
}

// Total returns the number of requests sent.
func (s Stats) Total() int64 {
	var n int64
	for _, v := range s.Calls {
		n += v
	}
	return n
}

// New checks the options and returns a Client.
func New(opts Options) (*Client, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = "https://api.chatbotkit.com"
	}
	base, err := parseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	switch opts.Paths {
	case PathsAuto, PathsPartner, PathsUser:
	default:
		return nil, fmt.Errorf("API paths %q: want auto, partner or user", string(opts.Paths))
	}
	if strings.ContainsAny(opts.Token.Reveal(), "\r\n\x00") {
		// net/http would refuse the header anyway; say so without quoting it.
		return nil, errors.New("the API token contains a line break or NUL byte")
	}
	c := &Client{
		base:      base,
		token:     opts.Token,
		redact:    opts.Redactor,
		userAgent: orDefault(opts.UserAgent, "cbk-sync/dev"),
		hc:        opts.HTTPClient,
		maxConns:  orDefault(opts.MaxConns, 8),
		timeout:   orDefault(opts.Timeout, 30*time.Second),
		maxRetry:  orDefault(opts.RetryMaxElapsed, 2*time.Minute),
		retryBase: orDefault(opts.RetryBase, 250*time.Millisecond),
		dryRun:    opts.DryRun,
		jsonl:     opts.JSONL,
		pageSize:  orDefault(opts.PageSize, pageSize),
		paths:     opts.Paths,
		log:       opts.Logger,

		maxListItems: MaxListItems,
		maxListBytes: MaxListBytes,
		clock:        realClock{},
		jitter:       fullJitter,
		shared:       &shared{calls: make(map[string]*atomic.Int64, len(allOps)), probe: make(chan struct{}, 1)},
	}
	if c.redact == nil {
		c.redact = state.NewRedactor()
	}
	c.redact.Add(opts.Token.Reveal())
	c.family.Store(int32(familyCode(opts.Paths)))
	if c.maxConns < 1 {
		c.maxConns = 1
	}
	if c.pageSize < 1 || c.pageSize > pageSize {
		return nil, fmt.Errorf("page size %d: want 1..%d", c.pageSize, pageSize)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if opts.PollBudget < 0 || opts.PollWindow < 0 {
		return nil, fmt.Errorf("poll budget and window must not be negative")
	}
	c.polls = newPollScheduler(opts.PollBudget, orDefault(opts.PollWindow, time.Minute), c.clock, c.log)
	if opts.RPS > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(opts.RPS), 1)
	}
	if c.hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// One connection more than the parallel requests: a streamed user listing
		// holds one for its whole answer, and the token lists must not wait for it.
		t.MaxConnsPerHost = c.maxConns + 1
		t.MaxIdleConnsPerHost = c.maxConns + 1
		c.hc = &http.Client{Transport: t}
	}
	// The API never redirects, and a redirect followed would carry the token to
	// wherever it points (another port, host or scheme): the 3xx answer itself is
	// returned and reported (see redirectError). A caller's client is copied, not
	// changed.
	hc := *c.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	for _, op := range allOps {
		c.calls[op] = new(atomic.Int64)
	}
	return c, nil
}

// ReadOnly returns a client in dry-run mode that shares this one's connections, rate
// cap, 429 pause and counters: a command can read through it and hand the writing
// client only to the code that must write, while the account is still paced as one.
func (c *Client) ReadOnly() *Client {
	ro := *c
	ro.dryRun = true
	return &ro
}

// Stats returns a snapshot of the counters (shared with ReadOnly clients).
func (c *Client) Stats() Stats {
	s := Stats{Calls: make(map[string]int64, len(c.calls)), Retries: c.retries.Load(), Throttled: c.throttled.Load()}
	c.polls.mu.Lock()
	s.Polls, s.PollRejections, s.PollWait, s.PollBudget = c.polls.sent, c.polls.rejected, c.polls.waited, c.polls.budget
	c.polls.mu.Unlock()
	for op, n := range c.calls {
		s.Calls[op] = n.Load()
	}
	return s
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("API URL: %w", err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("API URL %q: no host", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("API URL: credentials in the URL are not supported; use a token")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("API URL %s: %w", u.Redacted(), ErrInsecureURL)
		}
	default:
		return nil, fmt.Errorf("API URL %q: scheme must be https (or http for loopback)", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// IsLoopback reports whether host (a name or an IP, without port) is loopback: the
// only hosts to which plain http:// is allowed, and where the emulator binds by default.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// endpoint returns the address of an API operation made of segments ("user", id,
// "fetch"), relative to the root of a path family: attempt resolves it against the
// family in use (see familyURL). Each segment is escaped, so an ID can never change
// the path.
func (c *Client) endpoint(segments ...string) *url.URL {
	var b strings.Builder
	for i, s := range segments {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(url.PathEscape(s))
	}
	u := &url.URL{RawPath: b.String()}
	u.Path, _ = url.PathUnescape(u.RawPath)
	return u
}

// clock is time as the retry loop sees it; tests replace it to observe waits
// without sleeping.
type clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
