package emulator

import (
	"net/http"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The user operations (routes in router.go; the listing is list, list.go).

// userFetch answers a user by id or "@alias", without its description: the
// platform's fetch does not select it, so the key is missing.
func (e *Emulator) userFetch(req request) (any, bool, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.userRef(req.userID)
	if u == nil {
		return nil, false, errNotFound("user %s not found", req.userID)
	}
	return answerUser(u, false), false, nil
}

func (e *Emulator) userCreate(req request) (any, bool, *apiError) {
	p, aerr := parseUserPatch(req.body, false)
	if aerr != nil {
		return nil, false, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if aerr := e.checkEmailFree(p.Email, ""); aerr != nil {
		return nil, false, aerr
	}
	if aerr := e.checkAliasFree(p.Alias, ""); aerr != nil {
		return nil, false, aerr
	}
	if q := req.faults.UserQuota; q > 0 && e.users.len() >= q {
		e.countFault(faultQuota)
		return nil, false, &apiError{status: http.StatusTooManyRequests, code: "LIMITS_REACHED",
			msg: "You have exceeded your allocated account limits: users", header: http.Header{"X-Failure-Code": {"LIMITS_REACHED"}}}
	}
	now := e.nowMilli()
	u := &user{User: state.User{CreatedAt: now, UpdatedAt: now,
		Email: state.Null[string](), Name: state.Null[string](), Description: state.Null[string](),
		Image: state.Null[string](), Meta: state.Null[state.Meta](), Limits: state.Null[state.Limits]()},
		Alias: state.Null[string]()}
	u.ID = e.newID(now)
	applyUserPatch(u, p)
	e.insertUser(u)
	return idAnswer{u.ID}, true, nil
}

func (e *Emulator) userUpdate(req request) (any, bool, *apiError) {
	p, aerr := parseUserPatch(req.body, true)
	if aerr != nil {
		return nil, false, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.userRef(req.userID)
	if u == nil {
		return nil, false, errNotFound("user %s not found", req.userID)
	}
	if aerr := e.checkEmailFree(p.Email, u.ID); aerr != nil {
		return nil, false, aerr
	}
	if aerr := e.checkAliasFree(p.Alias, u.ID); aerr != nil {
		return nil, false, aerr
	}
	if p.Alias.Absent() {
		// TRAP: the platform's schema gives alias a default of null, so an update
		// that leaves it out clears it.
		p.Alias = state.Null[string]()
	}
	// A new record: stored ones never change (replaceUser moves the indexes).
	nu := *u
	applyUserPatch(&nu, p)
	nu.UpdatedAt = max(e.nowMilli(), u.CreatedAt)
	e.replaceUser(&nu)
	return idAnswer{u.ID}, true, nil
}

// userDelete deletes a user and, as the platform does, its tokens.
func (e *Emulator) userDelete(req request) (any, bool, *apiError) {
	if _, aerr := parseObject(req.body); aerr != nil {
		return nil, false, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.userRef(req.userID)
	if u == nil {
		return nil, false, errNotFound("user %s not found", req.userID)
	}
	e.deleteUser(u)
	return idAnswer{u.ID}, true, nil
}

func applyUserPatch(u *user, p userPatch) {
	set := func(dst *state.Opt[string], v state.Opt[string]) {
		if v.Present() {
			*dst = v
		}
	}
	set(&u.Email, p.Email)
	set(&u.Name, p.Name)
	set(&u.Description, p.Description)
	set(&u.Image, p.Image)
	set(&u.Alias, p.Alias)
	if p.Meta.present() {
		u.Meta = p.Meta.apply(u.Meta)
	}
	if p.Limits.Present() {
		u.Limits = p.Limits // replaced as a whole
	}
}
