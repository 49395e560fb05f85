package emulator

import (
	"encoding/json"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The token operations (routes in router.go; the listing is list, list.go). Token
// routes name their user by id only, never "@alias".

func (e *Emulator) tokenCreate(req request) (any, bool, *apiError) {
	p, aerr := parseTokenPatch(req.body, false)
	if aerr != nil {
		return nil, false, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.userByID[req.userID] == nil {
		return nil, false, errNotFound("user %s not found", req.userID)
	}
	now := e.nowMilli()
	// Name and description are non-null columns whose default is "".
	t := &token{Token: state.Token{CreatedAt: now, UpdatedAt: now,
		Name: state.Some(""), Description: state.Some(""), Meta: state.Null[state.Meta]()},
		Config: state.Null[json.RawMessage]()}
	t.ID = e.newID(now)
	applyTokenPatch(t, p)
	e.insertToken(req.userID, t)
	// The secret exists only in this answer: nothing of it is stored.
	return createdTokenAnswer{ID: t.ID, Token: newSecret(), CreatedAt: t.CreatedAt}, true, nil
}

func (e *Emulator) tokenUpdate(req request) (any, bool, *apiError) {
	p, aerr := parseTokenPatch(req.body, true)
	if aerr != nil {
		return nil, false, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, aerr := e.tokenRef(req)
	if aerr != nil {
		return nil, false, aerr
	}
	nt := *t
	applyTokenPatch(&nt, p)
	nt.UpdatedAt = max(e.nowMilli(), t.CreatedAt)
	e.replaceToken(req.userID, &nt)
	return idAnswer{t.ID}, true, nil
}

func (e *Emulator) tokenDelete(req request) (any, bool, *apiError) {
	if _, aerr := parseObject(req.body); aerr != nil {
		return nil, false, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, aerr := e.tokenRef(req)
	if aerr != nil {
		return nil, false, aerr
	}
	e.deleteToken(req.userID, t)
	return idAnswer{t.ID}, true, nil
}

// tokenRef finds the token a path names, of the user it names: a missing user is
// "user not found", a token of another user "token not found". The caller holds e.mu.
func (e *Emulator) tokenRef(req request) (*token, *apiError) {
	if e.userByID[req.userID] == nil {
		return nil, errNotFound("user %s not found", req.userID)
	}
	t := e.tokenByID[req.tokenID]
	if t == nil || e.tokenUser[req.tokenID] != req.userID {
		return nil, errNotFound("token %s not found", req.tokenID)
	}
	return t, nil
}

func applyTokenPatch(t *token, p tokenPatch) {
	if p.Name.Present() {
		t.Name = p.Name
	}
	if p.Description.Present() {
		t.Description = p.Description
	}
	if p.Meta.present() {
		t.Meta = p.Meta.apply(t.Meta)
	}
	if p.Config.Present() {
		t.Config = p.Config
	}
}
