package state

import (
	"fmt"
	"time"
)

// Pos is a position in a configuration file, for messages that point at the source.
type Pos struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// String formats the position as file:line:column.
func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column) }

// Desired is what the configuration files say should exist, after defaults were merged
// and variables expanded. Fields that the files did not give are absent.
type Desired struct {
	Owner      string `json:"owner"`
	PruneUsers bool   `json:"pruneUsers"`
	// ReleaseUsers (prune.users: release) releases owned users that no file declares
	// instead: cbk-sync's markers are removed, nothing is deleted. PruneUsers is then
	// false.
	ReleaseUsers bool `json:"releaseUsers,omitempty"`
	// ExternalIDKey is the meta key that holds the users' externalId ("" is
	// DefaultExternalIDKey).
	ExternalIDKey string        `json:"externalIdKey,omitempty"`
	Users         []DesiredUser `json:"users"`
}

// DesiredUser is one declared partner user.
type DesiredUser struct {
	// ID, ExternalID and Email name the user's sub-account, by that precedence
	// (Identity): an ID names an existing one; an ExternalID is the partner's own key,
	// held in meta under Desired.ExternalIDKey (the loader also puts it into Meta, so
	// it is enforced and created like a declared meta key). Under an ID or ExternalID
	// identity, Email is an ordinary field: absent means unmanaged.
	ID         string      `json:"id,omitempty"`
	ExternalID string      `json:"externalId,omitempty"`
	Email      Opt[string] `json:"email,omitzero"`
	// Alias is the user's declared alias, "" when none is declared. The platform never
	// returns an alias and clears it on every update that leaves it out, so a declared
	// one is sent with every create, update and adopt.
	Alias       string      `json:"alias,omitempty"`
	Name        Opt[string] `json:"name,omitzero"`
	Description Opt[string] `json:"description,omitzero"`
	Image       Opt[string] `json:"image,omitzero"`
	Meta        Opt[Meta]   `json:"meta,omitzero"`
	// MetaExact makes the declared meta the whole meta (metaMode: exact); otherwise
	// only the declared keys are enforced and other remote keys are kept. It applies
	// to the user's tokens too.
	MetaExact bool        `json:"metaExact,omitempty"`
	Limits    Opt[Limits] `json:"limits,omitzero"`
	// ManageTokens is false when the user has no `tokens` key: its tokens are then not
	// read and not changed. True with an empty Tokens means "revoke all owned tokens".
	ManageTokens    bool           `json:"manageTokens,omitempty"`
	Tokens          []DesiredToken `json:"tokens,omitempty"`
	ExclusiveTokens bool           `json:"exclusiveTokens,omitempty"`
	Pos             Pos            `json:"pos"`
}

// DesiredToken is one declared API token of a user.
type DesiredToken struct {
	Name        string      `json:"name"`
	Description Opt[string] `json:"description,omitzero"`
	Meta        Opt[Meta]   `json:"meta,omitzero"`
	// RotateAfter replaces a token older than this; 0 means never.
	RotateAfter time.Duration `json:"rotateAfter,omitempty"`
	Pos         Pos           `json:"pos"`
}
