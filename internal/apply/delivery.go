package apply

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// SecretSink receives the secret of every token apply creates. Deliver must not return
// until the record is durable (written and flushed or synced): apply revokes the old
// token of a rotation, and reports the create as done, only after Deliver returned nil.
// Deliver may be called from several goroutines at once.
type SecretSink interface {
	Deliver(SecretRecord) error
}

// SecretRetractor is a SecretSink that can take back a secret it was given, once the
// token was revoked right after the delivery (its confirmation failed): the record is
// the one delivered, with Revoked set. The age sink restores the file it replaced,
// the exec sink runs the command again with the record, and the JSON-lines file
// appends it, so that no destination silently holds a revoked secret in place of a
// live one. Retract must not return before the change is durable.
type SecretRetractor interface {
	Retract(SecretRecord) error
}

// SecretRecord is one created token and its secret. Token redacts itself everywhere
// (fmt, JSON, slog); a sink that must write the value calls Token.Reveal().
type SecretRecord struct {
	Email     string       `json:"email"`
	UserID    string       `json:"user_id"`
	TokenName string       `json:"token_name"`
	TokenID   string       `json:"token_id"`
	Token     state.Secret `json:"token"`
	CreatedAt time.Time    `json:"created_at"`
	// Revoked is true in a record handed back to Retract: the token was revoked after
	// its secret was delivered, and the secret no longer works.
	Revoked bool `json:"revoked,omitempty"`
}

// secretLine is the JSON-lines shape of docs/secrets.md, with the secret revealed.
type secretLine struct {
	Email     string    `json:"email"`
	UserID    string    `json:"user_id"`
	TokenName string    `json:"token_name"`
	TokenID   string    `json:"token_id"`
	Token     string    `json:"token"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// Line is rec as one JSON line (with its newline), the secret revealed: what every sink
// delivers, so a consumer reads the same record from a file, an age file or stdin.
func (rec SecretRecord) Line() ([]byte, error) {
	b, err := json.Marshal(secretLine{rec.Email, rec.UserID, rec.TokenName, rec.TokenID, rec.Token.Reveal(), rec.CreatedAt.UTC(), rec.Revoked})
	if err != nil {
		return nil, fmt.Errorf("secrets: encoding the record of token %s: %w", rec.TokenID, err)
	}
	return append(b, '\n'), nil
}

// deliver hands a new token's secret to the sink, and once the sink has it durably,
// confirms the token by clearing its pending mark: a run that stops in between leaves
// a token still marked, which the next plan revokes and creates again. If the sink or
// the confirmation fails, the token is revoked rather than left live and unconfirmed;
// a secret the sink already had is then taken back (retract), so that the sink is
// never left holding a revoked secret in place of a live one.
func (r *runner) deliver(userID string, c plan.Change, ct state.CreatedToken, res *Result) error {
	if err := r.yieldIfBeaten(userID, c, ct); err != nil {
		return err
	}
	rec, err := r.deliverSecret(userID, c, ct)
	if err != nil {
		return err
	}
	err = r.api.UpdateToken(r.call, userID, ct.ID, confirmBody)
	if err == nil {
		return nil
	}
	derr := r.deleteToken(userID, ct.ID)
	back := r.retract(rec, res)
	if derr != nil {
		return fmt.Errorf("the secret of new token %s was saved, but confirming the token failed (%v), and revoking it failed: %v (the next run replaces it); %s", ct.ID, err, derr, back)
	}
	return fmt.Errorf("the secret of new token %s was saved, but confirming the token failed, so it was revoked (%s): %w", ct.ID, back, err)
}

// retract tells the sink that the token of rec, whose secret it has, was revoked
// (SecretRetractor), records the outcome in res, and says it for the error.
func (r *runner) retract(rec SecretRecord, res *Result) string {
	rt, ok := r.o.Secrets.(SecretRetractor)
	if !ok {
		return "the secrets destination holds the revoked secret: it cannot take it back"
	}
	rec.Revoked = true
	if err := rt.Retract(rec); err != nil {
		r.log.Error("secret not rolled back", "email", rec.Email, "token_name", rec.TokenName, "token_id", rec.TokenID, "error", err.Error())
		return fmt.Sprintf("taking its secret back from the secrets destination failed: %v", err)
	}
	res.SecretRolledBack = append(res.SecretRolledBack, rec.TokenID)
	r.log.Warn("secret rolled back", "email", rec.Email, "token_name", rec.TokenName, "token_id", rec.TokenID)
	return "its secret was rolled back in the secrets destination"
}

// deliverSecret hands a new token's secret to the sink and returns the record
// delivered. If the sink fails, the secret is lost for good, so the token is revoked
// rather than left live and unusable.
func (r *runner) deliverSecret(userID string, c plan.Change, ct state.CreatedToken) (SecretRecord, error) {
	created := r.o.Now().UTC()
	if ct.CreatedAt > 0 {
		created = time.UnixMilli(ct.CreatedAt).UTC()
	}
	name := c.TokenName
	if name == "" && c.TokenBody != nil {
		name = c.TokenBody.Name.Value()
	}
	rec := SecretRecord{Email: c.Email, UserID: userID, TokenName: name, TokenID: ct.ID, Token: ct.Token, CreatedAt: created}
	err := r.o.Secrets.Deliver(rec)
	if err == nil {
		return rec, nil
	}
	if derr := r.deleteToken(userID, ct.ID); derr != nil {
		return rec, fmt.Errorf("saving the secret of new token %s failed (%v), and revoking it failed: %v (revoke it by hand)", ct.ID, err, derr)
	}
	return rec, fmt.Errorf("saving the secret of new token %s failed, so it was revoked: %w", ct.ID, err)
}
