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

// matches are the remote users Compute matched the declared users to, kept as little
// as possible (the IDs share the remote users' strings), since every plan has them and
// few runs write them out.
type matches struct {
	users []state.DesiredUser
	ids   []string       // by declared user: the matched user's ID, "" for a create
	email map[int]string // by declared user that declares no email: the remote one
}

func newMatches(users []state.DesiredUser) *matches {
	return &matches{users: users, ids: make([]string, len(users))}
}

// set records that declared user i, du, names remote user u.
func (m *matches) set(i int, du *state.DesiredUser, u *state.User) {
	m.ids[i] = u.ID
	if du.Email.Absent() && u.Email.Value() != "" {
		if m.email == nil {
			m.email = map[int]string{}
		}
		m.email[i] = u.Email.Value()
	}
}

// DeclaredIDs returns the declared users' identities and platform IDs: those a saved
// plan carries, or those Compute matched.
func (p *Plan) DeclaredIDs() []DeclaredID {
	if p.Declared != nil || p.matched == nil {
		return p.Declared
	}
	m := p.matched
	out := make([]DeclaredID, len(m.users))
	for i := range m.users {
		du := &m.users[i]
		email := du.Email.Value()
		if e, ok := m.email[i]; ok {
			email = e
		}
		out[i] = DeclaredID{Identity: du.Identity(), Email: email, ExternalID: du.ExternalID, UserID: m.ids[i]}
	}
	return out
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
	ids := slices.Clone(p.DeclaredIDs())
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
