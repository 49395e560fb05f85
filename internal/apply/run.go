// Package apply runs a Plan through the Partner API: independent users in parallel,
// each user's changes in order, lost answers and conflicts resolved by looking the
// object up, every created token's secret delivered to a durable sink before anything
// depends on it, and a Report of what each planned change came to.
package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// API is the part of the Partner API client that apply uses; *client.Client has it.
type API interface {
	ListUsers(ctx context.Context, o client.ListOptions) iter.Seq2[state.User, error]
	CreateUser(ctx context.Context, f state.UserFields) (string, error)
	UpdateUser(ctx context.Context, id string, f state.UserFields) error
	DeleteUser(ctx context.Context, id string) error
	ListTokens(ctx context.Context, userID string, o client.ListOptions) iter.Seq2[state.Token, error]
	CreateToken(ctx context.Context, userID string, f state.TokenFields) (state.CreatedToken, error)
	UpdateToken(ctx context.Context, userID, tokenID string, f state.TokenFields) error
	DeleteToken(ctx context.Context, userID, tokenID string) error
}

// DefaultParallelism is the number of users applied at once when Options leaves it 0.
const DefaultParallelism = 8

// maxCreateAttempts bounds the creates sent for one planned create when answers keep
// getting lost; each lost one is resolved by a lookup before the next is sent.
const maxCreateAttempts = 3

// ErrNoSecretsSink is returned, before any API call, for a plan that creates or rotates
// tokens when Options.Secrets is nil: the new secrets would have nowhere to go.
var ErrNoSecretsSink = errors.New("the plan creates tokens but no secrets destination was given (use --secrets-out FILE, or - for stdout)")

// Options tune Run.
type Options struct {
	// Parallelism is how many users are applied at once; 0 means DefaultParallelism.
	Parallelism int
	// Owner is the config's owner: the ownership marker written on what is created,
	// and the owner accepted when a lost user create is found again by email.
	Owner string
	// Secrets receives every created token's secret. Required when the plan creates
	// or rotates tokens.
	Secrets SecretSink
	// Logger gets one line per action; nil discards. No line carries a secret.
	Logger *slog.Logger
	// Progress, if set, is called after each action (done or skipped) with the number
	// of actions finished so far and the total. Calls are serialised.
	Progress func(done, total int)
	// Calls is the context of the calls and recovery steps already under way. Run's
	// ctx only stops new actions from starting; cancelling Calls also cancels what is
	// in flight (a second interrupt, or the end of a grace period). Nil means calls in
	// flight are never cancelled.
	Calls context.Context
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Desired is the desired state the plan was computed from, and PlanOptions the
	// options it was computed with. A planned user create that meets an existing user
	// (409, or a lost answer) re-plans that user from Desired and what it reads of the
	// user, instead of running the rest of its plan blind. Without Desired such a
	// user is adopted but its token changes are skipped.
	Desired     *state.Desired
	PlanOptions plan.Options
	// Unlocked says the run holds no account lock (the account is at its user quota,
	// and the plan creates no user): before a new token's secret is delivered, the
	// user's tokens are listed, and the token is revoked undelivered if another of its
	// name was delivered or created first (see yieldsTo), so that concurrent runs
	// cannot both deliver one token.
	Unlocked bool
}

// Run applies p through api and reports what each change came to.
//
// The returned error is only for a run that could not start (a nil plan, tokens to
// create with no secrets sink); then no API call was made. Failures of single actions,
// and a cancelled ctx, are recorded in the Report, whose Failed method tells whether
// everything planned was done. When ctx is cancelled, no new action starts, the calls
// already sent are allowed to finish, and the rest is marked skipped.
func Run(ctx context.Context, api API, p *plan.Plan, o Options) (*Report, error) {
	if api == nil {
		return nil, errors.New("apply: no API client")
	}
	if p == nil {
		return nil, errors.New("apply: no plan")
	}
	if o.Secrets == nil && createsTokens(p) {
		return nil, ErrNoSecretsSink
	}
	if o.Parallelism <= 0 {
		o.Parallelism = DefaultParallelism
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Owner == "" {
		o.Owner = p.Owner
	}

	call := o.Calls
	if call == nil {
		call = context.WithoutCancel(ctx)
	}
	r := &runner{api: api, o: o, ctx: ctx, call: call, log: o.Logger}
	if o.Desired != nil {
		r.desired = make(map[string]*state.DesiredUser, len(o.Desired.Users))
		for i := range o.Desired.Users {
			r.desired[o.Desired.Users[i].Identity().Key()] = &o.Desired.Users[i]
		}
	}
	rep := &Report{FormatVersion: ReportFormatVersion, Owner: o.Owner, StartedAt: o.Now()}

	// Results are laid out in plan order up front; each user's worker writes only its
	// own window (which a re-planned user may replace by a longer one), so the
	// report's order does not depend on scheduling.
	windows := make([][]Result, len(p.Users))
	rep.Results = []Result{} // an empty plan reports "results": [], not null
	for _, up := range p.Users {
		for _, c := range up.Changes {
			rep.Results = append(rep.Results, Result{
				Action: c.Action, Identity: up.Identity, Email: c.Email, UserID: firstNonEmpty(c.UserID, up.UserID),
				TokenName: c.TokenName, TokenID: c.TokenID,
			})
		}
	}
	r.total = len(rep.Results)
	off := 0
	for i, up := range p.Users {
		windows[i] = rep.Results[off : off+len(up.Changes) : off+len(up.Changes)]
		off += len(up.Changes)
	}

	sem := make(chan struct{}, o.Parallelism)
	var wg sync.WaitGroup
	for i, up := range p.Users {
		acquired := false
		select {
		case sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		// Checked after acquiring too: select picks at random when both are ready.
		if reason := r.stopReason(); reason != "" {
			if acquired {
				<-sem
			}
			for j := range windows[i] {
				r.skip(&windows[i][j], reason)
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			windows[i] = r.runUser(up, windows[i])
		})
	}
	wg.Wait()
	rep.LateTokensRevoked = r.revokeLate()
	all := make([]Result, 0, len(rep.Results))
	for _, w := range windows {
		all = append(all, w...)
	}
	rep.Results = all

	rep.Interrupted = r.interrupted.Load()
	rep.count()
	rep.Duration = o.Now().Sub(rep.StartedAt)
	return rep, nil
}

func createsTokens(p *plan.Plan) bool {
	for _, up := range p.Users {
		for _, c := range up.Changes {
			if c.Action == plan.TokenCreate || c.Action == plan.TokenRotate {
				return true
			}
		}
	}
	return false
}

// runner is the state of one Run shared by its user workers.
type runner struct {
	api API
	o   Options
	// ctx is the caller's: once it is done, nothing new starts. call is the same
	// without its cancellation, for calls and recovery steps already under way, so that
	// an interrupted run never leaves an action half done (a token created whose secret
	// was not delivered, a rotation whose old token was not revoked).
	ctx  context.Context
	call context.Context
	log  *slog.Logger
	// desired indexes Options.Desired by identity key (state.Identity.Key).
	desired map[string]*state.DesiredUser

	total       int
	mu          sync.Mutex // serialises Progress
	done        int
	interrupted atomic.Bool
	// late holds, per user ID, the nonces of lost token creates that a lookup did not
	// find (revokeLate).
	lateMu sync.Mutex
	late   map[string][]string
	// abort holds why nothing more should start after the API refused the credentials
	// or subscription: every further call would fail the same way.
	abort atomic.Pointer[string]
}

// stopReason says why no new action may start, or "" when they may.
func (r *runner) stopReason() string {
	if r.ctx.Err() != nil {
		r.interrupted.Store(true)
		return "not started: the run was interrupted"
	}
	if p := r.abort.Load(); p != nil {
		return *p
	}
	return ""
}

// runUser applies one user's changes in order and returns their results. A failed user
// create or adopt skips the user's later changes, which all need the user to exist and
// be owned; any other failure affects only its own change. A user create that finds
// the user already there replaces the user's later changes by a fresh plan of it.
func (r *runner) runUser(up plan.UserPlan, results []Result) []Result {
	userID := up.UserID
	blocked := ""
	// noSuccessor names a token of the user whose create or rotation failed in this
	// run: from then on none of the user's tokens is revoked (see holdsRevoke).
	noSuccessor := ""
	changes := up.Changes
	releasing := up.UserAction() == plan.UserRelease
	for j := 0; j < len(changes); j++ {
		c := changes[j]
		res := &results[j]
		if reason := r.stopReason(); reason != "" {
			r.skip(res, reason)
			continue
		}
		if blocked != "" {
			r.skip(res, blocked)
			continue
		}
		if noSuccessor != "" && holdsRevoke(c) {
			r.skip(res, fmt.Sprintf("skipped: new token %s of this user was not delivered, so none of its tokens is revoked in this run (a successor exists before anything is revoked)", noSuccessor))
			continue
		}
		if userID == "" {
			userID = c.UserID
		}
		if res.UserID == "" {
			res.UserID = userID // a token of a user created earlier in this run
		}
		if c.Action == plan.NoOp {
			// A planned change that a re-plan found already done.
			res.Status = StatusOK
			r.log.Info("not needed", resultAttrs(res)...)
			r.progress()
			continue
		}
		var err error
		if c.Action == plan.UserCreate {
			// create says why the user's later changes cannot run, if they cannot.
			changes, results, blocked, err = r.create(up.Identity, c, &userID, changes, results, j)
			res = &results[j]
		} else {
			err = r.do(c, &userID, res)
		}
		r.finish(res, err)
		if err != nil {
			switch {
			case c.Action == plan.UserAdopt:
				blocked = "skipped: the user could not be adopted"
			case releasing && c.Action.IsToken():
				// The user keeps its marker, so the next plan releases what is left.
				blocked = "skipped: a token of the user could not be released; the user stays owned and the next run releases it"
			case c.Action == plan.TokenCreate || c.Action == plan.TokenRotate:
				if noSuccessor == "" {
					noSuccessor = firstNonEmpty(c.TokenName, res.TokenName)
				}
			}
		}
	}
	return results
}

// holdsRevoke reports whether c is a revocation that must wait for the user's new
// tokens: any but that of a pending token, whose secret no one ever received.
func holdsRevoke(c plan.Change) bool {
	return c.Action == plan.TokenRevoke && c.Reason != plan.ReasonPending
}

// do runs one change. For a user create it sets *userID to the new user's ID.
func (r *runner) do(c plan.Change, userID *string, res *Result) error {
	if c.Action != plan.NoOp && *userID == "" {
		return fmt.Errorf("%s: the plan does not say which user ID", c.Action)
	}
	if (c.Action == plan.TokenCreate || c.Action == plan.TokenRotate) && r.o.Secrets == nil {
		// Run refuses a plan that creates tokens without a sink; a re-plan may add one.
		return ErrNoSecretsSink
	}
	switch c.Action {
	case plan.NoOp:
		return nil
	case plan.UserUpdate, plan.UserAdopt, plan.UserRelease:
		if c.UserBody == nil {
			return fmt.Errorf("%s: the plan has no user body", c.Action)
		}
		body := *c.UserBody
		if c.Action == plan.UserAdopt {
			body = r.withUserMarker(body)
		}
		return r.api.UpdateUser(r.call, *userID, body)
	case plan.UserDelete:
		err := r.api.DeleteUser(r.call, *userID)
		if client.IsNotFound(err) {
			return nil
		}
		return err
	case plan.TokenCreate:
		ct, err := r.createToken(*userID, c, res)
		if err != nil {
			return err
		}
		res.TokenID = ct.ID
		return r.deliver(*userID, c, ct, res)
	case plan.TokenRotate:
		return r.rotateToken(*userID, c, res)
	case plan.TokenUpdate, plan.TokenAdopt, plan.TokenRelease:
		if c.TokenBody == nil {
			return fmt.Errorf("%s: the plan has no token body", c.Action)
		}
		return r.api.UpdateToken(r.call, *userID, c.TokenID, *c.TokenBody)
	case plan.TokenRevoke:
		return r.deleteToken(*userID, c.TokenID)
	}
	return fmt.Errorf("unknown action %s", c.Action)
}

// finish records the outcome of a change that ran.
func (r *runner) finish(res *Result, err error) {
	attrs := resultAttrs(res)
	if err == nil {
		res.Status = StatusOK
		r.log.Info("applied", attrs...)
	} else {
		res.Status, res.Error = StatusFailed, err.Error()
		r.log.Error("failed", append(attrs, "error", res.Error)...)
		if refusesAll(err) {
			msg := fmt.Sprintf("not started: the API refused an earlier call (%v)", err)
			r.abort.CompareAndSwap(nil, &msg)
		}
	}
	r.progress()
}

// skip records a change that never started.
func (r *runner) skip(res *Result, reason string) {
	res.Status, res.Error = StatusSkipped, reason
	// Debug: an interrupted run may skip thousands; the command prints one summary
	// line, and the report (and --verbose) has each.
	r.log.Debug("skipped", append(resultAttrs(res), "reason", reason)...)
	r.progress()
}

func (r *runner) progress() {
	if r.o.Progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done++
	r.o.Progress(r.done, r.total)
}

// addTotal counts actions a re-plan added (or removed, when n < 0).
func (r *runner) addTotal(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total += n
}

func resultAttrs(res *Result) []any {
	attrs := []any{"action", res.Action.String(), "email", res.Email}
	for _, kv := range [][2]string{{"user_id", res.UserID}, {"token_name", res.TokenName}, {"token_id", res.TokenID}, {"new_token_id", res.NewTokenID}, {"recovered", res.Recovered}} {
		if kv[1] != "" {
			attrs = append(attrs, kv[0], kv[1])
		}
	}
	return attrs
}

// refusesAll reports an error that every further call would meet too: bad credentials,
// no subscription, or a client in dry-run mode.
func refusesAll(err error) bool {
	if errors.Is(err, client.ErrDryRun) {
		return true
	}
	var ae *client.APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusPaymentRequired)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// The real client is what Run is written for.
var _ API = (*client.Client)(nil)

// addNote appends a step to the account of how a change was recovered.
func addNote(res *Result, note string) {
	if res.Recovered == "" {
		res.Recovered = note
		return
	}
	res.Recovered += "; " + note
}
