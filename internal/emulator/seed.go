package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The Go API of the emulator's records, for seeding tests, demos and benchmarks and
// for reading back what a run did: no faults, counts or journal waits apply.

// Users returns a snapshot of every user, oldest first, with every field (description
// included).
func (e *Emulator) Users() []state.User {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]state.User, 0, e.users.len())
	for _, u := range e.users.all("") {
		c := u.User
		c.Meta = cloneMeta(c.Meta)
		c.Limits = cloneLimits(c.Limits)
		out = append(out, c)
	}
	return out
}

// Tokens returns a snapshot of a user's tokens, oldest first (never their secrets).
// An unknown user has none.
func (e *Emulator) Tokens(userID string) []state.Token {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.tokens.all(userID)
	if len(ts) == 0 {
		return nil
	}
	out := make([]state.Token, 0, len(ts))
	for _, t := range ts {
		c := t.Token
		c.Meta = cloneMeta(c.Meta)
		out = append(out, c)
	}
	return out
}

// PutUser stores a user directly, for seeding tests and benchmarks. It assigns ID,
// CreatedAt and UpdatedAt when they are empty and validates like a create (email
// format, duplicate email, meta keys, negative limits). Faults and quota do not apply.
func (e *Emulator) PutUser(u state.User) (state.User, error) {
	email, aerr := normaliseEmail(u.Email)
	if aerr != nil {
		return state.User{}, aerr
	}
	meta, aerr := validateMetaValue(u.Meta)
	if aerr != nil {
		return state.User{}, aerr
	}
	limits, aerr := validateLimitsValue(u.Limits)
	if aerr != nil {
		return state.User{}, aerr
	}
	rec := &user{User: state.User{
		ID: u.ID, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		Email: orNull(email), Name: orNull(u.Name), Description: orNull(u.Description),
		Image: orNull(u.Image), Meta: meta, Limits: limits,
	}, Alias: state.Null[string]()}

	e.mu.Lock()
	defer e.mu.Unlock()
	if aerr := e.stampSeeded(&rec.ID, &rec.CreatedAt, &rec.UpdatedAt); aerr != nil {
		return state.User{}, aerr
	}
	if aerr := e.checkEmailFree(rec.Email, ""); aerr != nil {
		return state.User{}, aerr
	}
	e.insertUser(rec)
	out := rec.User
	out.Meta = cloneMeta(out.Meta)
	out.Limits = cloneLimits(out.Limits)
	return out, nil
}

// stampSeeded gives a seeded record the ID and timestamps it lacks (UpdatedAt defaults
// to CreatedAt) and refuses an ID already in use; the caller holds e.mu.
func (e *Emulator) stampSeeded(id *string, createdAt, updatedAt *int64) *apiError {
	if *createdAt == 0 {
		*createdAt = e.nowMilli()
	}
	if *updatedAt == 0 {
		*updatedAt = *createdAt
	}
	if *id == "" {
		*id = e.newID(*createdAt)
		return nil
	}
	if e.idTaken(*id) {
		return &apiError{status: http.StatusConflict, code: "CONFLICT", msg: "id " + *id + " already exists"}
	}
	return nil
}

// PutToken stores a token of an existing user directly, for seeding. It assigns ID and
// CreatedAt when empty (give CreatedAt to make an old token); UpdatedAt defaults to
// CreatedAt. No secret exists for a seeded token.
func (e *Emulator) PutToken(userID string, t state.Token) (state.Token, error) {
	meta, aerr := validateMetaValue(t.Meta)
	if aerr != nil {
		return state.Token{}, aerr
	}
	rec := &token{Token: state.Token{
		ID: t.ID, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		Name: orNull(t.Name), Description: orNull(t.Description), Meta: meta,
	}, Config: state.Null[json.RawMessage]()}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.userByID[userID] == nil {
		return state.Token{}, errNotFound("user %s not found", userID)
	}
	if aerr := e.stampSeeded(&rec.ID, &rec.CreatedAt, &rec.UpdatedAt); aerr != nil {
		return state.Token{}, aerr
	}
	e.insertToken(userID, rec)
	out := rec.Token
	out.Meta = cloneMeta(out.Meta)
	return out, nil
}

// PutForeignUser makes id a user of another partner account, for tests: it is in no
// listing, and fetch, update, delete and every token route of it answer 403
// NOT_AUTHORIZED, as the platform answers for a user whose parent is another account
// (a missing user is 404). Its id can be used by no other object.
func (e *Emulator) PutForeignUser(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id == "" || e.idTaken(id) {
		return fmt.Errorf("emulator: id %q is empty or already in use", id)
	}
	e.putForeign(id)
	return nil
}

// Alias returns the alias of a user, which the API never shows, for tests and for
// `emu dump`; "" when it has none or does not exist.
func (e *Emulator) Alias(userID string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u := e.userByID[userID]; u != nil {
		return u.Alias.Value()
	}
	return ""
}
