package plan

import (
	"cmp"
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// DeclaredID is one declared user's identities and the platform ID of the sub-account
// it names: what --ids-out writes, so that the partner's app and Terraform (run_as)
// learn the IDs without another API call. UserID is "" for a user the plan creates.
type DeclaredID struct {
	Identity   state.Identity `json:"identity"`
	Email      string         `json:"email,omitempty"` // as declared, else the remote user's
	ExternalID string         `json:"external_id,omitempty"`
	UserID     string         `json:"user_id,omitempty"`
}

// declaredID is du's entry, for the remote user u (nil: to be created).
func declaredID(du *state.DesiredUser, u *state.User) DeclaredID {
	d := DeclaredID{Identity: du.Identity(), Email: du.Email.Value(), ExternalID: du.ExternalID}
	if u != nil {
		d.UserID = u.ID
		if d.Email == "" && !du.Email.IsNull() {
			d.Email = u.Email.Value()
		}
	}
	return d
}

// mergeDeclared returns saved with the entries of fresh (by identity) laid over it.
func mergeDeclared(saved, fresh []DeclaredID) []DeclaredID {
	if len(saved) == 0 {
		return fresh
	}
	at := make(map[string]int, len(saved))
	out := slices.Clone(saved)
	for i := range out {
		at[out[i].Identity.Key()] = i
	}
	for _, d := range fresh {
		if i, ok := at[d.Identity.Key()]; ok {
			out[i] = d
		} else {
			out = append(out, d)
		}
	}
	return out
}

// IDsFile is the --ids-out document: every declared user's platform ID by each of its
// identities, as maps a Terraform configuration can jsondecode and index
// (run_as = local.ids.by_external_id["cus_123"]), and as a list. A user still to be
// created maps to null.
type IDsFile struct {
	Owner        string             `json:"owner"`
	ByEmail      map[string]*string `json:"by_email"`
	ByExternalID map[string]*string `json:"by_external_id"`
	ByID         map[string]*string `json:"by_id"`
	Users        []IDsUser          `json:"users"`
}

// IDsUser is one declared user of IDsFile.
type IDsUser struct {
	Identity   string  `json:"identity"` // email, externalId or id: how the file names it
	Email      string  `json:"email,omitempty"`
	ExternalID string  `json:"external_id,omitempty"`
	ID         *string `json:"id"`
}

// IDs returns the --ids-out document of p: its declared users' IDs as the plan read
// them, with created laid over them (identity key -> the ID of a user created since,
// by an apply).
func (p *Plan) IDs(created map[string]string) IDsFile {
	f := IDsFile{Owner: p.Owner, ByEmail: map[string]*string{}, ByExternalID: map[string]*string{}, ByID: map[string]*string{}, Users: []IDsUser{}}
	ids := slices.Clone(p.Declared)
	slices.SortFunc(ids, func(x, y DeclaredID) int {
		return cmp.Or(strings.Compare(x.Identity.Key(), y.Identity.Key()), strings.Compare(x.UserID, y.UserID))
	})
	for _, d := range ids {
		if id, ok := created[d.Identity.Key()]; ok && d.UserID == "" {
			d.UserID = id
		}
		var v *string
		if d.UserID != "" {
			s := d.UserID
			v = &s
		}
		if d.Email != "" {
			f.ByEmail[d.Email] = v
		}
		if d.ExternalID != "" {
			f.ByExternalID[d.ExternalID] = v
		}
		if d.Identity.Kind == state.ByID {
			f.ByID[d.Identity.Value] = v
		}
		f.Users = append(f.Users, IDsUser{Identity: d.Identity.Kind.String(), Email: d.Email, ExternalID: d.ExternalID, ID: v})
	}
	return f
}
