package apply

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Creates are not idempotent, so a create whose answer was lost, or that met 409, is
// never retried blindly: the object is looked up first, and only a lookup that proves
// the create did not happen allows another one.

// createUser creates the user of c and returns its ID. A lost answer or a 409 is
// resolved by looking the email up: a user found with our marker or with none is
// adopted (the create body is sent as an update, meta merged), a user of another owner
// is an error, and nothing found after a lost answer means the create can be sent again.
func (r *runner) createUser(c plan.Change, res *Result) (string, error) {
	if c.UserBody == nil {
		return "", fmt.Errorf("%s: the plan has no user body", c.Action)
	}
	body := r.withUserMarker(*c.UserBody)
	var notes []string
	defer func() { res.Recovered = strings.Join(notes, "; ") }()
	for attempt := 1; ; attempt++ {
		id, err := r.api.CreateUser(r.call, body)
		if err == nil && id == "" {
			return "", fmt.Errorf("%s: the API answered without a user ID", c.Action)
		}
		if err == nil {
			if len(notes) > 0 {
				notes = append(notes, "created")
			}
			return id, nil
		}
		lost := client.IsLost(err)
		if !lost && !client.IsConflict(err) {
			return "", err
		}
		what := "answer lost"
		if !lost {
			what = "409 conflict"
		}
		u, found, lerr := r.findUser(c.Email)
		if lerr != nil {
			return "", fmt.Errorf("%w; then looking the user up by email failed: %v", err, lerr)
		}
		if found {
			kind := "unmanaged"
			switch owner := u.Owner(); owner {
			case r.o.Owner:
				kind = "owned"
			case "":
			default:
				return "", fmt.Errorf("%w; the user with this email belongs to owner %q, so it was not adopted", err, owner)
			}
			if uerr := r.api.UpdateUser(r.call, u.ID, adoptBody(body, u)); uerr != nil {
				notes = append(notes, fmt.Sprintf("%s; found %s user %s by email", what, kind, u.ID))
				return "", fmt.Errorf("adopting user %s failed: %w", u.ID, uerr)
			}
			notes = append(notes, fmt.Sprintf("%s; found %s user %s by email: adopted", what, kind, u.ID))
			return u.ID, nil
		}
		if !lost {
			return "", fmt.Errorf("%w; yet no user with this email was found", err)
		}
		notes = append(notes, "answer lost; not found by email, so not created")
		if attempt >= maxCreateAttempts {
			return "", fmt.Errorf("gave up after %d creates whose answers were lost: %w", attempt, err)
		}
	}
}

// findUser looks a user up by email with one list call.
func (r *runner) findUser(email string) (state.User, bool, error) {
	key := state.EmailKey(email)
	for u, err := range r.api.ListUsers(r.call, client.ListOptions{Email: email}) {
		if err != nil {
			return state.User{}, false, err
		}
		// The filter's case handling is the API's; identity here is case-insensitive.
		if state.EmailKey(u.Email.Value()) == key {
			return u, true, nil
		}
	}
	return state.User{}, false, nil
}

// withUserMarker makes sure the body carries the ownership marker, as everything
// cbk-sync creates or adopts must.
func (r *runner) withUserMarker(b state.UserFields) state.UserFields {
	m := b.Meta.Value()
	if r.o.Owner == "" || m[state.OwnerKey] == r.o.Owner {
		return b
	}
	m = m.Clone()
	if m == nil {
		m = state.Meta{}
	}
	m[state.OwnerKey] = r.o.Owner
	b.Meta = state.Some(m)
	return b
}

// adoptBody turns a create body into the update that adopts remote: meta is merged so
// that keys the user already had are kept, and limits, which the API replaces whole,
// are the remote ones with the declared ones laid over them.
func adoptBody(b state.UserFields, remote state.User) state.UserFields {
	b.MetaMerge = true
	if declared, ok := b.Limits.Get(); ok {
		if rl, ok := remote.Limits.Get(); ok {
			b.Limits = state.Some(state.OverlayLimits(rl, declared))
		}
	}
	return b
}

// createToken creates the token of c (a create, or a rotation's successor). Each
// attempt carries a fresh nonce in its meta, so a lost answer is resolved by finding
// the token with that nonce: if it exists its secret is gone, so it is revoked before
// the next attempt; if not, the next attempt is safe. Either way no live token is left
// whose secret was not delivered.
func (r *runner) createToken(userID string, c plan.Change, res *Result) (state.CreatedToken, error) {
	if c.TokenBody == nil {
		return state.CreatedToken{}, fmt.Errorf("%s: the plan has no token body", c.Action)
	}
	var notes []string
	defer func() { res.Recovered = strings.Join(notes, "; ") }()
	var err error
	for attempt := 1; attempt <= maxCreateAttempts; attempt++ {
		nonce := newNonce()
		var ct state.CreatedToken
		ct, err = r.api.CreateToken(r.call, userID, r.tokenCreateBody(*c.TokenBody, nonce))
		if err == nil {
			if ct.ID == "" {
				return ct, fmt.Errorf("%s: the API answered without a token ID", c.Action)
			}
			if len(notes) > 0 {
				notes = append(notes, fmt.Sprintf("created %s", ct.ID))
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
			notes = append(notes, "answer lost; not found by nonce, so not created")
			continue
		}
		if derr := r.deleteToken(userID, tok.ID); derr != nil {
			return state.CreatedToken{}, fmt.Errorf("%w; token %s was created but its secret is lost, and revoking it failed: %v (revoke it by hand)", err, tok.ID, derr)
		}
		notes = append(notes, fmt.Sprintf("answer lost; found token %s by nonce, its secret lost: revoked", tok.ID))
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

// tokenCreateBody is b with the marker and nonce added to its meta (a create has no
// stored meta to merge with, so meta is sent whole).
func (r *runner) tokenCreateBody(b state.TokenFields, nonce string) state.TokenFields {
	m := b.Meta.Value().Clone()
	if m == nil {
		m = state.Meta{}
	}
	if _, ok := m[state.OwnerKey]; !ok && r.o.Owner != "" {
		m[state.OwnerKey] = r.o.Owner
	}
	m[state.NonceKey] = nonce
	b.Meta, b.MetaMerge = state.Some(m), false
	return b
}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}

// deliver hands a new token's secret to the sink. If the sink fails, the secret is
// lost for good, so the token is revoked rather than left live and unusable.
func (r *runner) deliver(userID string, c plan.Change, ct state.CreatedToken) error {
	created := r.o.Now().UTC()
	if ct.CreatedAt > 0 {
		created = time.UnixMilli(ct.CreatedAt).UTC()
	}
	name := c.TokenName
	if name == "" && c.TokenBody != nil {
		name = c.TokenBody.Name.Value()
	}
	err := r.o.Secrets.Deliver(SecretRecord{
		Email: c.Email, UserID: userID, TokenName: name, TokenID: ct.ID, Token: ct.Token, CreatedAt: created,
	})
	if err == nil {
		return nil
	}
	if derr := r.deleteToken(userID, ct.ID); derr != nil {
		return fmt.Errorf("saving the secret of new token %s failed (%v), and revoking it failed: %v (revoke it by hand)", ct.ID, err, derr)
	}
	return fmt.Errorf("saving the secret of new token %s failed, so it was revoked: %w", ct.ID, err)
}

// rotateToken creates the successor, delivers its secret, and only then revokes the old
// token, so that a failure at any step leaves a usable token behind.
func (r *runner) rotateToken(userID string, c plan.Change, res *Result) error {
	ct, err := r.createToken(userID, c, res)
	if err != nil {
		return fmt.Errorf("creating the successor failed, so old token %s was kept: %w", c.TokenID, err)
	}
	res.NewTokenID = ct.ID
	if err := r.deliver(userID, c, ct); err != nil {
		return fmt.Errorf("%w; old token %s was kept", err, c.TokenID)
	}
	if err := r.deleteToken(userID, c.TokenID); err != nil {
		return fmt.Errorf("successor %s was created and its secret saved, but revoking old token %s failed: %w", ct.ID, c.TokenID, err)
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
