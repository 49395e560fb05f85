package apply_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// fault is what fakeAPI does instead of (or besides) answering a call.
type fault int

const (
	lost            fault = iota + 1 // make the change, then report the answer lost
	conflict                         // 409 CONFLICT, nothing changed
	quota                            // 429 LIMITS_REACHED
	badReq                           // 400
	unauth                           // 401
	notFound                         // 404
	lostBeforeApply                  // report the answer lost without making the change
)

// fakeAPI is an in-memory Partner API that records every call as "Op key" (key: the
// email for user creates and lookups, the user ID for other user calls, "userID/name"
// for token creates, "userID/tokenID" for other token calls, the user ID for token
// lists) and plays injected faults once each.
type fakeAPI struct {
	t  *testing.T
	mu sync.Mutex
	// log is shared with the fake sink, so that deliveries show in call order.
	log    []string
	faults map[string][]fault
	users  map[string]*state.User
	tokens map[string]map[string]*state.Token // user ID -> token ID -> token
	// aliases are the users' write-only aliases, by user ID: like the platform, an
	// update that leaves alias out clears it.
	aliases map[string]string
	nextID  int

	// hook, if set, runs at the start of every call, outside the lock (to hold calls).
	hook        func(call string)
	inflight    atomic.Int64
	maxInflight atomic.Int64
}

func newFake(t *testing.T) *fakeAPI {
	return &fakeAPI{t: t, faults: map[string][]fault{}, users: map[string]*state.User{}, tokens: map[string]map[string]*state.Token{},
		aliases: map[string]string{}}
}

// inject makes the next call named call meet f.
func (f *fakeAPI) inject(call string, fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[call] = append(f.faults[call], fs...)
}

// addUser stores a user as if it existed before the run.
func (f *fakeAPI) addUser(email string, meta state.Meta) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("u%d", f.nextID)
	f.users[id] = &state.User{ID: id, Email: state.Some(email), Meta: state.Some(meta)}
	return id
}

// addToken stores a token as if it existed before the run.
func (f *fakeAPI) addToken(userID, name string, meta state.Meta) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("t%d", f.nextID)
	if f.tokens[userID] == nil {
		f.tokens[userID] = map[string]*state.Token{}
	}
	f.tokens[userID][id] = &state.Token{ID: id, Name: state.Some(name), Meta: state.Some(meta)}
	return id
}

func (f *fakeAPI) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func (f *fakeAPI) liveTokens(userID string) []state.Token {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []state.Token
	for _, id := range slices.Sorted(maps.Keys(f.tokens[userID])) {
		out = append(out, *f.tokens[userID][id])
	}
	return out
}

// begin records the call, checks that it was sent with a live context, and returns
// the fault to play and a func to call when it ends.
func (f *fakeAPI) begin(ctx context.Context, call string) (fault, func()) {
	if ctx.Err() != nil {
		f.t.Errorf("%s was sent with a cancelled context", call)
	}
	n := f.inflight.Add(1)
	for {
		m := f.maxInflight.Load()
		if n <= m || f.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	if f.hook != nil {
		f.hook(call)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, call)
	var ft fault
	if q := f.faults[call]; len(q) > 0 {
		ft, f.faults[call] = q[0], q[1:]
	}
	return ft, func() { f.inflight.Add(-1) }
}

func faultErr(op string, ft fault) error {
	switch ft {
	case lost, lostBeforeApply:
		return &client.LostAnswerError{Op: op, Err: errors.New("connection reset by peer")}
	case conflict:
		return &client.APIError{Op: op, Status: http.StatusConflict, Code: "CONFLICT", Message: "duplicate"}
	case quota:
		return &client.APIError{Op: op, Status: http.StatusTooManyRequests, Code: "LIMITS_REACHED", Message: "limit reached"}
	case badReq:
		return &client.APIError{Op: op, Status: http.StatusBadRequest, Code: "BAD_REQUEST", Message: "bad"}
	case unauth:
		return &client.APIError{Op: op, Status: http.StatusUnauthorized, Code: "NOT_AUTHENTICATED", Message: "who are you"}
	case notFound:
		return &client.APIError{Op: op, Status: http.StatusNotFound, Code: "NOT_FOUND", Message: "gone"}
	}
	return nil
}

// before returns the error to answer without changing anything, or nil to go on.
func before(op string, ft fault) error {
	if ft == 0 || ft == lost {
		return nil
	}
	return faultErr(op, ft)
}

func mergeMeta(old state.Opt[state.Meta], m state.Opt[state.Meta], merge bool) state.Opt[state.Meta] {
	if m.Absent() {
		return old
	}
	if !merge || !old.IsSet() {
		return state.Some(m.Value().Clone())
	}
	out := old.Value().Clone()
	maps.Copy(out, m.Value())
	return state.Some(out)
}

func (f *fakeAPI) ListUsers(ctx context.Context, o client.ListOptions) iter.Seq2[state.User, error] {
	return func(yield func(state.User, error) bool) {
		ft, end := f.begin(ctx, "ListUsers "+o.Email)
		defer end()
		if err := before("user.list", ft); err != nil {
			yield(state.User{}, err)
			return
		}
		f.mu.Lock()
		var out []state.User
		for _, id := range slices.Sorted(maps.Keys(f.users)) {
			u := f.users[id]
			if o.Email == "" || strings.EqualFold(u.Email.Value(), o.Email) {
				out = append(out, *u)
			}
		}
		f.mu.Unlock()
		for _, u := range out {
			if !yield(u, nil) {
				return
			}
		}
	}
}

func (f *fakeAPI) CreateUser(ctx context.Context, uf state.UserFields) (string, error) {
	email := uf.Email.Value()
	ft, end := f.begin(ctx, "CreateUser "+email)
	defer end()
	if err := before("user.create", ft); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if strings.EqualFold(u.Email.Value(), email) {
			return "", faultErr("user.create", conflict)
		}
	}
	f.nextID++
	id := fmt.Sprintf("u%d", f.nextID)
	f.users[id] = &state.User{ID: id, Email: uf.Email, Name: uf.Name, Meta: mergeMeta(state.Opt[state.Meta]{}, uf.Meta, false), Limits: uf.Limits}
	if a, ok := uf.Alias.Get(); ok {
		f.aliases[id] = a
	}
	return id, faultErr("user.create", ft)
}

func (f *fakeAPI) UpdateUser(ctx context.Context, id string, uf state.UserFields) error {
	ft, end := f.begin(ctx, "UpdateUser "+id)
	defer end()
	if err := before("user.update", ft); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return faultErr("user.update", notFound)
	}
	u.Meta = mergeMeta(u.Meta, uf.Meta, uf.MetaMerge)
	if uf.Name.Present() {
		u.Name = uf.Name
	}
	if uf.Limits.Present() {
		u.Limits = uf.Limits
	}
	if a, ok := uf.Alias.Get(); ok {
		f.aliases[id] = a
	} else {
		delete(f.aliases, id)
	}
	return faultErr("user.update", ft)
}

func (f *fakeAPI) DeleteUser(ctx context.Context, id string) error {
	ft, end := f.begin(ctx, "DeleteUser "+id)
	defer end()
	if err := before("user.delete", ft); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.users, id)
	delete(f.tokens, id)
	return nil
}

func (f *fakeAPI) ListTokens(ctx context.Context, userID string, _ client.ListOptions) iter.Seq2[state.Token, error] {
	return func(yield func(state.Token, error) bool) {
		ft, end := f.begin(ctx, "ListTokens "+userID)
		defer end()
		if err := before("token.list", ft); err != nil {
			yield(state.Token{}, err)
			return
		}
		for _, t := range f.liveTokens(userID) {
			if !yield(t, nil) {
				return
			}
		}
	}
}

// secretOf is the secret the fake gives token id; tests look for "SECRET" in outputs.
func secretOf(id string) state.Secret { return state.Secret("sk-SECRET-" + id) }

func (f *fakeAPI) CreateToken(ctx context.Context, userID string, tf state.TokenFields) (state.CreatedToken, error) {
	ft, end := f.begin(ctx, "CreateToken "+userID+"/"+tf.Name.Value())
	defer end()
	if err := before("token.create", ft); err != nil {
		return state.CreatedToken{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[userID]; !ok {
		return state.CreatedToken{}, faultErr("token.create", notFound)
	}
	f.nextID++
	id := fmt.Sprintf("t%d", f.nextID)
	if f.tokens[userID] == nil {
		f.tokens[userID] = map[string]*state.Token{}
	}
	f.tokens[userID][id] = &state.Token{ID: id, Name: tf.Name, Description: tf.Description, Meta: mergeMeta(state.Opt[state.Meta]{}, tf.Meta, false)}
	if ft == lost {
		return state.CreatedToken{}, faultErr("token.create", lost)
	}
	return state.CreatedToken{ID: id, Token: secretOf(id), CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()}, nil
}

func (f *fakeAPI) UpdateToken(ctx context.Context, userID, tokenID string, tf state.TokenFields) error {
	ft, end := f.begin(ctx, "UpdateToken "+userID+"/"+tokenID)
	defer end()
	if err := before("token.update", ft); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[userID][tokenID]
	if !ok {
		return faultErr("token.update", notFound)
	}
	t.Meta = mergeMeta(t.Meta, tf.Meta, tf.MetaMerge)
	return nil
}

func (f *fakeAPI) DeleteToken(ctx context.Context, userID, tokenID string) error {
	ft, end := f.begin(ctx, "DeleteToken "+userID+"/"+tokenID)
	defer end()
	if err := before("token.delete", ft); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens[userID], tokenID)
	return nil
}

// fakeSink records deliveries in the fake's call log, as "Deliver tokenID", and can
// be made to fail.
type fakeSink struct {
	f    *fakeAPI
	fail error
	recs []apply.SecretRecord
	// pendingAtDelivery says, per delivery, whether the token was still marked pending.
	pendingAtDelivery []bool
}

func (s *fakeSink) Deliver(rec apply.SecretRecord) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.log = append(s.f.log, "Deliver "+rec.TokenID)
	if t, ok := s.f.tokens[rec.UserID][rec.TokenID]; ok {
		s.pendingAtDelivery = append(s.pendingAtDelivery, t.Pending())
	}
	if s.fail != nil {
		return s.fail
	}
	s.recs = append(s.recs, rec)
	return nil
}

func (s *fakeSink) delivered() map[string]int {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	n := map[string]int{}
	for _, r := range s.recs {
		n[r.TokenID]++
	}
	return n
}
