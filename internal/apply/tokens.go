package apply

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The token lifecycle: a token is created pending (with a nonce that finds it after a
// lost answer), confirmed once its secret is delivered (delivery.go), rotated by
// creating its successor first, and revoked.

// createToken creates the token of c (a create, or a rotation's successor). Each
// attempt carries a fresh nonce in its meta, so a lost answer is resolved by finding
// the token with that nonce: if it exists its secret is gone, so it is revoked before
// the next attempt; if not, the next attempt is safe. Either way no live token is left
// whose secret was not delivered.
func (r *runner) createToken(userID string, c plan.Change, res *Result) (state.CreatedToken, error) {
	if c.TokenBody == nil {
		return state.CreatedToken{}, fmt.Errorf("%s: the plan has no token body", c.Action)
	}
	var err error
	for attempt := 1; attempt <= maxCreateAttempts; attempt++ {
		nonce := newNonce()
		var ct state.CreatedToken
		ct, err = r.api.CreateToken(r.call, userID, r.tokenCreateBody(*c.TokenBody, nonce))
		if err == nil {
			if ct.ID == "" {
				return ct, fmt.Errorf("%s: the API answered without a token ID", c.Action)
			}
			if attempt > 1 {
				addNote(res, fmt.Sprintf("created %s", ct.ID))
			}
			return ct, nil
		}
		if !client.IsLost(err) {
			return state.CreatedToken{}, err
		}
		tok, found, lerr := r.findToken(userID, nonce)
		if lerr != nil {
			return state.CreatedToken{}, fmt.Errorf("%w; then looking the token up by its nonce failed: %v", err, lerr)
		}
		if !found {
			// Not found yet: a server that completes the create after the client gave
			// up may still make it. It would stay pending (never confirmed), so the run
			// looks for it again at its end (revokeLate), and the next plan revokes it.
			addNote(res, "answer lost; not found by nonce yet (if the server still makes it, it stays pending and is revoked)")
			r.lateNonce(userID, nonce)
			continue
		}
		if derr := r.deleteToken(userID, tok.ID); derr != nil {
			return state.CreatedToken{}, fmt.Errorf("%w; token %s was created but its secret is lost, and revoking it failed: %v (revoke it by hand)", err, tok.ID, derr)
		}
		addNote(res, fmt.Sprintf("answer lost; found token %s by nonce, its secret lost: revoked", tok.ID))
	}
	return state.CreatedToken{}, fmt.Errorf("gave up after %d creates whose answers were lost: %w", maxCreateAttempts, err)
}

// findToken looks for the user's token that carries nonce in its meta.
func (r *runner) findToken(userID, nonce string) (state.Token, bool, error) {
	for t, err := range r.api.ListTokens(r.call, userID, client.ListOptions{}) {
		if err != nil {
			return state.Token{}, false, err
		}
		if m, ok := t.Meta.Get(); ok && m[state.NonceKey] == nonce {
			return t, true, nil
		}
	}
	return state.Token{}, false, nil
}

// tokenCreateBody is b with the marker, the nonce and the pending mark added to its
// meta (a create has no stored meta to merge with, so meta is sent whole).
func (r *runner) tokenCreateBody(b state.TokenFields, nonce string) state.TokenFields {
	m := b.Meta.Value().Clone()
	if m == nil {
		m = state.Meta{}
	}
	if _, ok := m[state.OwnerKey]; !ok && r.o.Owner != "" {
		m[state.OwnerKey] = r.o.Owner
	}
	m[state.NonceKey] = nonce
	m[state.PendingKey] = true
	b.Meta, b.MetaMerge = state.Some(m), false
	return b
}

// confirmBody clears the pending mark, merged into the token's stored meta.
var confirmBody = state.TokenFields{Meta: state.Some(state.Meta{state.PendingKey: nil}), MetaMerge: true}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}

// rotateToken creates the successor, delivers its secret and confirms it, and only then
// revokes the old token, so that a failure or a crash at any step leaves a usable
// token behind.
func (r *runner) rotateToken(userID string, c plan.Change, res *Result) error {
	ct, err := r.createToken(userID, c, res)
	if err != nil {
		return fmt.Errorf("creating the successor failed, so old token %s was kept: %w", c.TokenID, err)
	}
	res.NewTokenID = ct.ID
	if err := r.deliver(userID, c, ct, res); err != nil {
		return fmt.Errorf("%w; old token %s was kept", err, c.TokenID)
	}
	if err := r.deleteToken(userID, c.TokenID); err != nil {
		return fmt.Errorf("successor %s was created, its secret saved and confirmed, but revoking old token %s failed: %w", ct.ID, c.TokenID, err)
	}
	return nil
}

// deleteToken revokes a token; one that is already gone counts as revoked.
func (r *runner) deleteToken(userID, tokenID string) error {
	err := r.api.DeleteToken(r.call, userID, tokenID)
	if client.IsNotFound(err) {
		return nil
	}
	return err
}

// listTokens reads a user's whole token list.
func (r *runner) listTokens(userID string) ([]state.Token, error) {
	out := []state.Token{}
	for t, err := range r.api.ListTokens(r.call, userID, client.ListOptions{}) {
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// lateNonce remembers the nonce of a lost token create not found when looked up.
func (r *runner) lateNonce(userID, nonce string) {
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	if r.late == nil {
		r.late = map[string][]string{}
	}
	r.late[userID] = append(r.late[userID], nonce)
}

// revokeLate looks once more, at the end of the run, for the lost token creates that
// were not found: one the server completed meanwhile is pending, its secret lost, and
// is revoked now; it returns their IDs. One it completes later still is revoked by the
// next plan (pending).
func (r *runner) revokeLate() []string {
	var revoked []string
	for userID, nonces := range r.late {
		toks, err := r.listTokens(userID)
		if err != nil {
			r.log.Warn("looking again for lost token creates failed; the next plan revokes any that turn up", "user_id", userID, "error", err.Error())
			continue
		}
		for _, t := range toks {
			m, ok := t.Meta.Get()
			if !ok || !slices.Contains(nonces, fmt.Sprint(m[state.NonceKey])) {
				continue
			}
			if err := r.deleteToken(userID, t.ID); err != nil {
				r.log.Warn("a lost token create turned up, and revoking it failed; the next plan revokes it", "user_id", userID, "token_id", t.ID, "error", err.Error())
				continue
			}
			r.log.Warn("a lost token create turned up after all, its secret lost: revoked", "user_id", userID, "token_id", t.ID)
			revoked = append(revoked, t.ID)
		}
	}
	slices.Sort(revoked)
	return revoked
}
