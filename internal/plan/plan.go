// Package plan turns desired and actual state into a Plan: the ordered set of changes
// that makes actual equal desired. It does no I/O; renderers for text, JSON and
// Markdown read the same Plan.
package plan

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Action is what one Change does. The zero value is NoOp.
type Action int

// The actions of the plan (docs/output.md), and token_adopt (a token update that adds the ownership
// marker, shown and counted as an adoption like a user's). Appended last so that the
// values of the others stay as they were.
const (
	NoOp Action = iota
	UserCreate
	UserUpdate
	UserDelete
	UserAdopt
	TokenCreate
	TokenUpdate
	TokenRevoke
	TokenRotate
	TokenAdopt
	// UserRelease and TokenRelease (prune.users: release) remove cbk-sync's markers
	// from an owned user that no file declares, and from its owned tokens, and change
	// nothing else: the user is unmanaged afterwards, and can be adopted again.
	UserRelease
	TokenRelease
)

var actionNames = [...]string{"no_op", "user_create", "user_update", "user_delete", "user_adopt", "token_create", "token_update", "token_revoke", "token_rotate", "token_adopt", "user_release", "token_release"}

var actionSymbols = [...]string{" ", "+", "~", "-", ">", "+", "~", "-", "±", ">", "<", "<"}

// Legend is the one-line key to the symbols of the text view.
const Legend = "Symbols: + create, ~ update, - delete or revoke, > adopt, ± rotate (create the successor, then revoke)."

// LegendRelease is added to the legend of a plan that releases users.
const LegendRelease = " < release (only cbk-sync's owner marker is removed)."

// Actions lists every action but NoOp, in summary order.
var Actions = []Action{UserCreate, UserUpdate, UserDelete, UserAdopt, UserRelease, TokenCreate, TokenUpdate, TokenAdopt, TokenRevoke, TokenRotate, TokenRelease}

// String returns the action's name as used in JSON output (e.g. "user_create").
func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("Action(%d)", int(a))
	}
	return actionNames[a]
}

// Symbol returns the one-character mark shown in the text plan.
func (a Action) Symbol() string {
	if a < 0 || int(a) >= len(actionSymbols) {
		return "?"
	}
	return actionSymbols[a]
}

// IsToken reports whether the action changes a token rather than a user.
func (a Action) IsToken() bool { return a >= TokenCreate && a != UserRelease }

// MarshalJSON writes the action's name.
func (a Action) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

// UnmarshalJSON reads an action's name.
func (a *Action) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for i, n := range actionNames {
		if n == s {
			*a = Action(i)
			return nil
		}
	}
	return fmt.Errorf("unknown action %q", s)
}

// FieldChange is one field's value before and after a change, for display. Values are
// JSON-shaped (string, float64, bool, nil, map, slice); Before is absent for a create.
type FieldChange struct {
	Field  string `json:"field"`            // e.g. "name", "meta.team", "limits.database.files"
	Before any    `json:"before,omitempty"` // nil means null or not there
	After  any    `json:"after"`
	// BeforeUnknown is true when the API did not return the field at all.
	BeforeUnknown bool `json:"before_unknown,omitempty"`
}

// Change is one planned action: one API write, but two for a token create (create, then
// confirm once the secret is delivered) and three for a rotation (create, confirm, revoke
// the old).
type Change struct {
	Action Action `json:"action"`
	// Email is the user's email as declared, else as remote ("" for a user without
	// one); the user's identity is its UserPlan's.
	Email  string `json:"email"`
	UserID string `json:"user_id,omitempty"` // empty for a user that does not exist yet
	// Token changes only.
	TokenName string        `json:"token_name,omitempty"`
	TokenID   string        `json:"token_id,omitempty"` // the existing token: updated, revoked, or rotated out
	Reason    string        `json:"reason"`             // why, in words
	Fields    []FieldChange `json:"fields,omitempty"`
	// What to send. UserBody for user_create/update/adopt; TokenBody for
	// token_create/update/rotate (for a rotation: the new token's fields). The apply
	// engine adds the token nonce itself.
	UserBody  *state.UserFields  `json:"user_body,omitempty"`
	TokenBody *state.TokenFields `json:"token_body,omitempty"`
}

// UserPlan is every change for one user, in the order they must run: the user's own
// change first, then its tokens (a rotation creates the successor before revoking).
type UserPlan struct {
	// Identity names the user: as its file declares it, or for a user no file declares
	// (a delete) by its email, else its id.
	Identity state.Identity `json:"identity"`
	Email    string         `json:"email"`
	UserID   string         `json:"user_id,omitempty"`
	Changes  []Change       `json:"changes"`
}

// UserAction is the change of the user itself (create, update, delete, adopt,
// release), or NoOp when only its tokens change. It is the first change, except for a
// release, whose tokens are released first (see Compute).
func (up *UserPlan) UserAction() Action {
	for _, c := range up.Changes {
		if !c.Action.IsToken() {
			return c.Action
		}
	}
	return NoOp
}

// Orphan is an owned user that no file declares (or a second owned user with a
// declared email), listed with no action.
type Orphan struct {
	Identity state.Identity `json:"identity"`
	Email    string         `json:"email"`
	UserID   string         `json:"user_id"`
	// Reason says why it is kept: prune.users is off, or it shares its email with the
	// user that was matched (deleting it would be a guess).
	Reason string `json:"reason,omitempty"`
}

// Safety is the verdict on whether the plan may run.
type Safety struct {
	Safe bool `json:"safe"`
	// Reasons explain an unsafe verdict: a delete cap exceeded, a foreign user that
	// needs --takeover.
	Reasons []string `json:"reasons,omitempty"`
	Deletes int      `json:"deletes"` // user deletions planned
	Updates int      `json:"updates"` // user updates planned (adoptions not counted)
	Owned   int      `json:"owned"`   // users owned remotely
	// Foreign are the IDs of the declared users that another owner manages and that
	// make the plan unsafe without --takeover: a saved plan depends on them too.
	Foreign []string `json:"foreign,omitempty"`
}

// Summary counts changes per action, with the JSON keys of docs/output.md.
type Summary struct {
	UserCreate  int `json:"user_create"`
	UserUpdate  int `json:"user_update"`
	UserDelete  int `json:"user_delete"`
	UserAdopt   int `json:"user_adopt"`
	UserRelease int `json:"user_release"`
	TokenCreate int `json:"token_create"`
	TokenUpdate int `json:"token_update"`
	TokenAdopt  int `json:"token_adopt"`
	TokenRevoke int `json:"token_revoke"`
	TokenRotate int `json:"token_rotate"`
	// TokenRelease counts the owned tokens of released users whose marker is removed.
	TokenRelease int `json:"token_release"`
}

// Count returns the number for action a.
func (s Summary) Count(a Action) int {
	switch a {
	case UserCreate:
		return s.UserCreate
	case UserUpdate:
		return s.UserUpdate
	case UserDelete:
		return s.UserDelete
	case UserAdopt:
		return s.UserAdopt
	case UserRelease:
		return s.UserRelease
	case TokenRelease:
		return s.TokenRelease
	case TokenCreate:
		return s.TokenCreate
	case TokenUpdate:
		return s.TokenUpdate
	case TokenAdopt:
		return s.TokenAdopt
	case TokenRevoke:
		return s.TokenRevoke
	case TokenRotate:
		return s.TokenRotate
	}
	return 0
}

func (s *Summary) add(a Action) {
	switch a {
	case UserCreate:
		s.UserCreate++
	case UserUpdate:
		s.UserUpdate++
	case UserDelete:
		s.UserDelete++
	case UserAdopt:
		s.UserAdopt++
	case UserRelease:
		s.UserRelease++
	case TokenRelease:
		s.TokenRelease++
	case TokenCreate:
		s.TokenCreate++
	case TokenUpdate:
		s.TokenUpdate++
	case TokenAdopt:
		s.TokenAdopt++
	case TokenRevoke:
		s.TokenRevoke++
	case TokenRotate:
		s.TokenRotate++
	}
}

// Total is the number of changes.
func (s Summary) Total() int {
	n := 0
	for _, a := range Actions {
		n += s.Count(a)
	}
	return n
}

// Plan is the ordered set of changes that makes actual equal desired.
type Plan struct {
	Owner    string     `json:"owner"`
	Users    []UserPlan `json:"users"` // only users with at least one change, in a stable order
	Orphans  []Orphan   `json:"orphans"`
	Warnings []string   `json:"warnings"`
	Safety   Safety     `json:"safety"`
	// Fingerprint is Fingerprint(Dependencies(actual, plan)): of the remote objects the
	// changes were computed from. A saved plan is applied only if a fresh read of those
	// objects gives the same.
	Fingerprint string `json:"fingerprint"`
	// TokenUsers are the IDs of the users whose token lists the changes depend on (the
	// users with token changes), so that a saved plan is checked by reading exactly
	// those token lists again.
	TokenUsers []string `json:"token_users"`
	// ReadCost is what reading the remote state cost against the poll limit, when
	// the command recorded it; the JSON view shows it as "reads". Never saved: it
	// describes a run, not the plan.
	ReadCost *ReadCost `json:"-"`
	// SecretsTo says where the secrets of the tokens the plan creates go, set by the
	// command that applies it (sync, apply) from its flags; nil when not known (plan).
	// It is part of what a reviewer approves, so every view shows it, but it is not a
	// change: Compute never sets it and saved plans are compared without it.
	SecretsTo *SecretsDestination `json:"secrets_to,omitempty"`
	// TokensUnchecked is the number of existing users that declare tokens whose token
	// lists the plan did not read (ComputePartial, plan --base): their token drift was
	// not checked. Every view says so.
	TokensUnchecked int `json:"tokens_unchecked,omitempty"`
	// Account counts the remote users the plan read, declared or not (nil for a plan
	// of one user, UserChanges). Like the orphans, it is about the whole account: a
	// saved plan keeps the one it was computed with.
	Account *Census `json:"account,omitempty"`
	// Declared are the declared users' identities and platform IDs as the plan read
	// them ("" for a user to create), for --ids-out. Like Account it describes the
	// read, not a change: a saved plan keeps the one it was computed with.
	Declared []DeclaredID `json:"declared_ids,omitempty"`
}

// UncheckedLine says plainly whose token drift a partial plan did not check, or ""
// for a plan that checked every user.
func (p *Plan) UncheckedLine() string {
	switch p.TokensUnchecked {
	case 0:
		return ""
	case 1:
		return "Not checked: the tokens of 1 user whose declared tokens this change leaves as they were (plan --base reads only the token lists the change touches); the scheduled full plan checks them."
	}
	return fmt.Sprintf("Not checked: the tokens of %d users whose declared tokens this change leaves as they were (plan --base reads only the token lists the change touches); the scheduled full plan checks them.", p.TokensUnchecked)
}

// ReadCost counts the polls (list requests) a plan's read made, those the poll limit
// rejected, the time they waited for its window, and the budget in force.
type ReadCost struct {
	Polls      int64 `json:"polls"`
	Rejected   int64 `json:"poll_rejections"`
	WaitMS     int64 `json:"poll_wait_ms"`
	PollBudget int   `json:"poll_budget,omitempty"`
}

// SecretsDestination is where created token secrets are delivered: the kind of sink and
// its location, never a secret.
type SecretsDestination struct {
	// Kind is "file" (a JSON-lines file), "stdout", "age" (age-encrypted files in a
	// directory) or "exec" (a command, the record on its stdin).
	Kind string `json:"kind"`
	// Location is the file, the directory, or the command line ("-" for stdout).
	Location string `json:"location"`
	// Recipients is the number of age recipients each file is encrypted to.
	Recipients int `json:"recipients,omitempty"`
}

// Describe says in words where the secrets go, for the text and Markdown views.
func (d SecretsDestination) Describe() string {
	loc := Printable(d.Location)
	switch d.Kind {
	case "file":
		return "the JSON-lines file " + loc + " (mode 0600)"
	case "stdout":
		return "stdout, as JSON lines"
	case "age":
		noun := "recipients"
		if d.Recipients == 1 {
			noun = "recipient"
		}
		return fmt.Sprintf("age-encrypted files %s/<email, or user id>/<token-name>.age, for %d %s", strings.TrimSuffix(loc, "/"), d.Recipients, noun)
	case "exec":
		return "the command " + loc + ", one run per secret with the record on its stdin"
	}
	return Printable(d.Kind) + " " + loc
}

// Summary counts the plan's changes per action.
func (p *Plan) Summary() Summary {
	var s Summary
	for _, u := range p.Users {
		for _, c := range u.Changes {
			s.add(c.Action)
		}
	}
	return s
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return p.Summary().Total() == 0 }
