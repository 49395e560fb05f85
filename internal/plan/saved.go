package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// SavedKind is the kind of a saved plan file, so that another JSON file given to
// `apply` is recognised as not a plan.
const SavedKind = "cbk-sync-plan"

// SavedFormatVersion is the format_version of saved plans. Version 1 carried the plan
// alone, which apply had to trust; version 2 carries what it was computed from;
// version 3 names every user by its identity (id, externalId or email) and lets a
// declared user have no email.
const SavedFormatVersion = "3"

// Saved is a plan saved for `apply FILE` (`plan --out FILE`), with everything it was
// computed from: the options, the desired state of the users it concerns, and the
// remote objects its changes depend on (Dependencies). Nothing in it is trusted: apply
// computes the plan again from the desired state and a fresh read of those objects,
// and runs that, only if it equals the saved plan. The plan is kept for review and
// for the comparison, and is what `show FILE` prints once it is checked.
type Saved struct {
	Options Options       `json:"options"`
	Desired state.Desired `json:"desired"`
	Remote  state.Actual  `json:"remote"`
	Plan    *Plan         `json:"plan"`
}

type savedFile struct {
	FormatVersion string `json:"format_version"`
	Kind          string `json:"kind"`
	*Saved
}

type savedHeader struct {
	FormatVersion string          `json:"format_version"`
	Kind          string          `json:"kind"`
	Options       json.RawMessage `json:"options"`
	Desired       json.RawMessage `json:"desired"`
	Remote        json.RawMessage `json:"remote"`
	Plan          json.RawMessage `json:"plan"`
}

// maxSavedPlan bounds what ReadSaved reads, far above a 100,000-user plan's size, so
// that a wrong file cannot exhaust memory.
const maxSavedPlan = 1 << 30

// NewSaved returns p, computed by Compute(d, a, o), as a plan to save: with the desired
// users it concerns (those it changes and those that make it unsafe) and the part of a
// its changes depend on.
func NewSaved(d state.Desired, a state.Actual, o Options, p *Plan) *Saved {
	remote := Dependencies(a, p)
	for _, id := range p.Safety.Foreign {
		for _, u := range a.Users {
			if u.ID == id {
				remote.Users = append(remote.Users, u)
			}
		}
	}
	// The saved desired users are those with changes, and those that name a remote
	// object the plan depends on (so that it is planned again against that object).
	keys := map[string]bool{}
	for _, up := range p.Users {
		keys[up.Identity.Key()] = true
	}
	idx := state.NewUserIndex(remote.Users, d.ExternalIDKey)
	desired := state.Desired{Owner: d.Owner, PruneUsers: d.PruneUsers, ReleaseUsers: d.ReleaseUsers, ExternalIDKey: d.ExternalIDKey, Users: []state.DesiredUser{}}
	for i := range d.Users {
		du := &d.Users[i]
		if keys[du.Identity().Key()] {
			desired.Users = append(desired.Users, *du)
		} else if j, err := idx.Match(du); err == nil && j >= 0 {
			desired.Users = append(desired.Users, *du)
		}
	}
	// The alias lookups of the saved users go with them: Check and Verify plan an
	// alias update again from them (see Fingerprint for why they stay valid).
	for _, du := range desired.Users {
		if holder, ok := a.Aliases[du.Alias]; ok && du.Alias != "" {
			if remote.Aliases == nil {
				remote.Aliases = map[string]string{}
			}
			remote.Aliases[du.Alias] = holder
		}
	}
	// The declared users' IDs go with it, for apply FILE --ids-out.
	p.Declared = nonNil(p.DeclaredIDs())
	return &Saved{Options: o, Desired: desired, Remote: remote, Plan: p}
}

// WriteSaved writes s as a saved plan file.
func WriteSaved(w io.Writer, s *Saved) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(savedFile{FormatVersion: SavedFormatVersion, Kind: SavedKind, Saved: s})
}

// ReadSaved reads a plan written by WriteSaved. It is strict: an unknown key, another
// kind or format version, trailing data or an inconsistent change is an error. It
// checks the file's form only; Check and Verify decide whether it may run.
func ReadSaved(r io.Reader) (*Saved, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSavedPlan+1))
	if err != nil {
		return nil, fmt.Errorf("reading saved plan: %w", err)
	}
	if len(data) > maxSavedPlan {
		return nil, errors.New("saved plan: file is larger than 1 GiB")
	}
	var h savedHeader
	if err := strictDecode(data, &h); err != nil {
		return nil, fmt.Errorf("saved plan: not a cbk-sync plan file: %w", err)
	}
	if h.Kind != SavedKind {
		return nil, fmt.Errorf("saved plan: kind is %q, want %q: is this a file written by `cbk-sync plan --out`?", h.Kind, SavedKind)
	}
	if h.FormatVersion == "1" || h.FormatVersion == "2" {
		return nil, fmt.Errorf("saved plan: format_version %q was written by an older cbk-sync, which named users by email alone; this cbk-sync reads %q, with identities: run `cbk-sync plan --out` again with this version and review that plan", h.FormatVersion, SavedFormatVersion)
	}
	if h.FormatVersion != SavedFormatVersion {
		return nil, fmt.Errorf("saved plan: format_version %q is not supported (this cbk-sync reads %q); run `cbk-sync plan --out` again with this version", h.FormatVersion, SavedFormatVersion)
	}
	// A plan saved before the token revocation caps existed was computed without them:
	// it is read back so, not with a cap of 0.
	s := &Saved{Options: Options{MaxTokenRevokes: -1, MaxTokenRevokePercent: -1}}
	for _, part := range []struct {
		name string
		raw  json.RawMessage
		v    any
	}{{"options", h.Options, &s.Options}, {"desired", h.Desired, &s.Desired}, {"remote", h.Remote, &s.Remote}, {"plan", h.Plan, &s.Plan}} {
		if len(part.raw) == 0 || bytes.Equal(bytes.TrimSpace(part.raw), []byte("null")) {
			return nil, fmt.Errorf("saved plan: no %s in the file", part.name)
		}
		if err := strictDecode(part.raw, part.v); err != nil {
			return nil, fmt.Errorf("saved plan: %s: %w", part.name, err)
		}
		if err := checkKept(part.name, part.raw, part.v); err != nil {
			return nil, fmt.Errorf("saved plan: %w", err)
		}
	}
	if err := s.Plan.validate(); err != nil {
		return nil, fmt.Errorf("saved plan: %w", err)
	}
	for _, du := range s.Desired.Users {
		if l, ok := du.Limits.Get(); ok {
			if err := state.CheckLimits(l); err != nil {
				return nil, fmt.Errorf("saved plan: desired user %s: %w", du.Identity(), err)
			}
		}
	}
	if s.Desired.Owner != s.Plan.Owner {
		return nil, fmt.Errorf("saved plan: the desired state's owner %q is not the plan's %q", s.Desired.Owner, s.Plan.Owner)
	}
	return s, nil
}

// checkKept makes sure that nothing of the file was silently dropped. encoding/json
// matches keys case-insensitively, and DisallowUnknownFields does not reach into the
// fields that state.Opt decodes itself (limits): without this check, a misspelt limit
// in a hand-edited plan would vanish, and apply would send limits without it.
func checkKept(name string, raw []byte, v any) error {
	written, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var in, out any
	if err := json.Unmarshal(raw, &in); err != nil {
		return err
	}
	if err := json.Unmarshal(written, &out); err != nil {
		return err
	}
	return keptIn(name, in, out)
}

// keptIn reports the first key of in that is missing from out, the plan as written
// back, at the same place. A key WriteSaved leaves out for an empty value (null,
// false, "", []) may be missing.
func keptIn(path string, in, out any) error {
	switch in := in.(type) {
	case map[string]any:
		om, _ := out.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(in)) {
			ov, ok := om[k]
			if !ok {
				if omittable(in[k]) {
					continue
				}
				return fmt.Errorf("%s: unknown key %q", path, k)
			}
			if err := keptIn(path+"."+k, in[k], ov); err != nil {
				return err
			}
		}
	case []any:
		outs, _ := out.([]any)
		if len(outs) != len(in) {
			return fmt.Errorf("%s: %d items read, %d kept", path, len(in), len(outs))
		}
		for i := range in {
			if err := keptIn(fmt.Sprintf("%s[%d]", path, i), in[i], outs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func omittable(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	}
	return false
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON document")
	}
	return nil
}

// validate checks what apply relies on, so that a hand-edited or truncated file fails
// here rather than halfway through a run.
func (p *Plan) validate() error {
	if p.Owner == "" {
		return errors.New("no owner")
	}
	if p.Fingerprint == "" {
		return errors.New("no fingerprint")
	}
	for _, u := range p.Users {
		if len(u.Changes) == 0 {
			return fmt.Errorf("user %s has no changes", label(u.Identity))
		}
		if u.Identity.IsZero() {
			return fmt.Errorf("a user with changes (%s) has no identity", u.Changes[0].Action)
		}
		// A token change needs the ID of its user: from the plan, or from the user
		// create that comes first.
		userKnown := u.UserID != ""
		for i, c := range u.Changes {
			if c.Action <= NoOp || int(c.Action) >= len(actionNames) {
				return fmt.Errorf("user %s: change %d has no action", label(u.Identity), i+1)
			}
			where := fmt.Sprintf("user %s: %s", label(u.Identity), c.Action)
			switch c.Action {
			case UserCreate, UserUpdate, UserAdopt, UserRelease:
				if c.UserBody == nil {
					return fmt.Errorf("%s has no user_body", where)
				}
				// Unknown limit keys are legitimate (remote ones are sent back), but a
				// known one must be what the platform accepts.
				if a, ok := c.UserBody.Alias.Get(); ok && !state.ValidAlias(a) {
					return fmt.Errorf("%s: invalid alias %q", where, a)
				}
				if l, ok := c.UserBody.Limits.Get(); ok {
					if err := state.CheckWireLimits(l); err != nil {
						return fmt.Errorf("%s: %w", where, err)
					}
				}
			case TokenCreate, TokenUpdate, TokenAdopt, TokenRotate, TokenRelease:
				if c.TokenBody == nil {
					return fmt.Errorf("%s has no token_body", where)
				}
			}
			if c.Action != UserCreate && !c.Action.IsToken() && c.UserID == "" {
				return fmt.Errorf("%s has no user_id", where)
			}
			if (c.Action == TokenUpdate || c.Action == TokenAdopt || c.Action == TokenRevoke || c.Action == TokenRotate || c.Action == TokenRelease) && c.TokenID == "" {
				return fmt.Errorf("%s has no token_id", where)
			}
			// A release runs its user's change last, after the tokens (see Compute).
			if i > 0 && !c.Action.IsToken() && (c.Action != UserRelease || i != len(u.Changes)-1) {
				return fmt.Errorf("%s is not the user's first change", where)
			}
			userKnown = userKnown || c.UserID != "" || c.Action == UserCreate
			if c.Action.IsToken() && !userKnown {
				return fmt.Errorf("%s has no user_id and follows no user_create", where)
			}
		}
	}
	return nil
}
