package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// safeScenario is the golden scenario with --takeover, which makes it safe, plus an
// unmanaged user and a user of another owner that no file declares.
func safeScenario() (state.Desired, state.Actual, Options) {
	d, a, o := goldenScenario()
	o.Takeover = true
	a.Users = append(a.Users,
		state.User{ID: "u_zed", CreatedAt: 1, UpdatedAt: 1, Email: state.Some("zed@acme.test"), Meta: state.Some(meta("team", "x"))},
		state.User{ID: "u_yan", CreatedAt: 1, UpdatedAt: 1, Email: state.Some("yan@acme.test"), Meta: state.Some(meta(state.OwnerKey, "other-team"))},
	)
	return d, a, o
}

// saveAndRead writes the plan of d, a, o as a saved plan, lets edit change the file's
// JSON, and reads it back.
func saveAndRead(t *testing.T, d state.Desired, a state.Actual, o Options, edit func(f map[string]any)) *Saved {
	t.Helper()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, WriteSaved(&b, NewSaved(d, a, o, &p)))
	if edit != nil {
		var f map[string]any
		require.NoError(t, json.Unmarshal(b.Bytes(), &f))
		edit(f)
		out, err := json.Marshal(f)
		require.NoError(t, err)
		b.Reset()
		b.Write(out)
	}
	s, err := ReadSaved(&b)
	require.NoError(t, err)
	return s
}

// fetched is the remote state as apply reads it again: the dependencies by fetch,
// which leaves description out.
func fetched(a state.Actual, s *Saved) Fresh {
	r := s.Reads()
	f := Fresh{Tokens: map[string][]state.Token{}}
	for _, u := range a.Users {
		if r.Listing || slices.Contains(r.Users, u.ID) {
			if !r.Listing {
				u.Description = state.Opt[string]{}
			}
			f.Users = append(f.Users, u)
		}
	}
	f.Listed = r.Listing
	for _, id := range r.Tokens {
		if ts, ok := a.Tokens[id]; ok {
			f.Tokens[id] = ts
		}
	}
	return f
}

func TestSavedPlanIsComputedAgain(t *testing.T) {
	d, a, o := safeScenario()
	want, err := Compute(d, a, o)
	require.NoError(t, err)
	require.True(t, want.Safety.Safe)
	s := saveAndRead(t, d, a, o, nil)

	checked, err := s.Check()
	require.NoError(t, err)
	assert.Equal(t, wireJSON(t, want.Users), wireJSON(t, checked.Users))

	// The saved desired state is the users the plan concerns, not the whole file.
	assert.Less(t, len(s.Desired.Users), len(d.Users))
	assert.Len(t, s.Remote.Users, len(s.Reads().Users))

	got, err := s.Verify(fetched(a, s))
	require.NoError(t, err)
	assert.Equal(t, wireJSON(t, want.Users), wireJSON(t, got.Users), "apply runs the plan that was saved")
	assert.Equal(t, want.Orphans, got.Orphans)
	assert.True(t, got.Safety.Safe)
}

func TestSavedPlanReads(t *testing.T) {
	d, a, o := safeScenario()
	s := saveAndRead(t, d, a, o, nil)
	r := s.Reads()
	// The golden plan creates users, so the listing is needed for their emails.
	assert.True(t, r.Listing)
	assert.Equal(t, []string{"u_bob", "u_carol"}, r.Tokens, "only the users whose tokens change")
	assert.NotContains(t, r.Users, "u_zed")
	assert.NotContains(t, r.Users, "u_gina", "no change, not read again")

	// An update alone is checked by fetches and no listing.
	d2 := state.Desired{Owner: gOwner, Users: []state.DesiredUser{{Email: state.Some("gina@acme.test"), Name: state.Some("G")}}}
	s2 := saveAndRead(t, d2, a, o, nil)
	assert.Equal(t, Reads{Users: []string{"u_gina"}}, s2.Reads())
	// Deletes under the percentage cap need the number of owned users.
	d3 := d2
	d3.PruneUsers = true
	d3.Users = append(d3.Users, state.DesiredUser{Email: state.Some("bob@acme.test")}, state.DesiredUser{ID: "u_frank"})
	s3 := saveAndRead(t, d3, a, o, nil)
	assert.True(t, s3.Reads().Listing)
	o.ForceDeletes = true
	assert.False(t, saveAndRead(t, d3, a, o, nil).Reads().Listing)
}

// changesOf returns the file's plan.users list for editing.
func changesOf(f map[string]any) []any {
	return f["plan"].(map[string]any)["users"].([]any)
}

func TestForgedSavedPlanIsRefused(t *testing.T) {
	d, a, o := safeScenario()
	for name, tc := range map[string]struct {
		scenario func() (state.Desired, state.Actual, Options)
		edit     func(f map[string]any)
		want     error
	}{
		"a delete of an unmanaged user added": {edit: func(f map[string]any) {
			p := f["plan"].(map[string]any)
			p["users"] = append(changesOf(f), map[string]any{"identity": map[string]any{"kind": "email", "value": "zed@acme.test"}, "email": "zed@acme.test", "user_id": "u_zed",
				"changes": []any{map[string]any{"action": "user_delete", "email": "zed@acme.test", "user_id": "u_zed", "reason": "owned and not declared (prune.users is true)"}}})
		}, want: ErrEdited},
		"an update of a foreign user added": {edit: func(f map[string]any) {
			p := f["plan"].(map[string]any)
			p["users"] = append(changesOf(f), map[string]any{"identity": map[string]any{"kind": "email", "value": "yan@acme.test"}, "email": "yan@acme.test", "user_id": "u_yan",
				"changes": []any{map[string]any{"action": "user_update", "email": "yan@acme.test", "user_id": "u_yan", "reason": "drifted",
					"fields": []any{map[string]any{"field": "name", "after": "Y"}}, "user_body": map[string]any{"name": "Y"}}}})
		}, want: ErrEdited},
		"a user_body edited": {edit: func(f map[string]any) {
			for _, u := range changesOf(f) {
				for _, c := range u.(map[string]any)["changes"].([]any) {
					if b, ok := c.(map[string]any)["user_body"].(map[string]any); ok && b["name"] == "Robert Roe" {
						b["name"] = "Mallory"
					}
				}
			}
		}, want: ErrEdited},
		"a change removed": {edit: func(f map[string]any) {
			p := f["plan"].(map[string]any)
			p["users"] = changesOf(f)[1:]
		}, want: ErrEdited},
		"the safe flag set on an unsafe plan": {scenario: unsafeScenario, edit: func(f map[string]any) {
			safety := f["plan"].(map[string]any)["safety"].(map[string]any)
			safety["safe"], safety["reasons"] = true, []any{}
		}, want: ErrEdited},
		"an unsafe plan as saved":                     {scenario: unsafeScenario, want: ErrUnsafe},
		"a foreign user without --takeover, as saved": {scenario: goldenScenario, want: ErrUnsafe},
		"the safe flag set on a plan with a foreign user": {scenario: goldenScenario, edit: func(f map[string]any) {
			safety := f["plan"].(map[string]any)["safety"].(map[string]any)
			safety["safe"], safety["reasons"] = true, []any{}
		}, want: ErrEdited},
	} {
		t.Run(name, func(t *testing.T) {
			d, a, o := d, a, o
			if tc.scenario != nil {
				d, a, o = tc.scenario()
			}
			s := saveAndRead(t, d, a, o, tc.edit)
			_, err := s.Check()
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestForgedRemoteIsStale(t *testing.T) {
	// The file is consistent with itself: zed is made owned in the saved remote objects
	// and its delete planned. The fresh fetch shows zed unmanaged, so it is refused.
	d, a, o := safeScenario()
	forged := a
	forged.Users = slices.Clone(a.Users)
	for i := range forged.Users {
		if forged.Users[i].ID == "u_zed" {
			forged.Users[i].Meta = gMeta()
		}
	}
	s := saveAndRead(t, d, forged, o, nil)
	_, err := s.Check()
	require.NoError(t, err)
	assert.Contains(t, s.Reads().Users, "u_zed")
	_, err = s.Verify(fetched(a, s))
	require.ErrorIs(t, err, ErrStale)
	assert.Contains(t, err.Error(), "zed@acme.test")
}

func TestStaleSavedPlanIsRefused(t *testing.T) {
	d, a, o := safeScenario()
	s := saveAndRead(t, d, a, o, nil)
	for name, tc := range map[string]struct {
		change func(a *state.Actual)
		msg    string
	}{
		"a changed user updatedAt": {func(a *state.Actual) { userByID(a, "u_bob").UpdatedAt++ }, "bob@acme.test"},
		"a changed user name":      {func(a *state.Actual) { userByID(a, "u_bob").Name = state.Some("Someone") }, "bob@acme.test"},
		"a deleted user": {func(a *state.Actual) {
			a.Users = slices.DeleteFunc(a.Users, func(u state.User) bool { return u.ID == "u_dave" })
		}, "no longer exists"},
		"a new token": {func(a *state.Actual) {
			a.Tokens["u_bob"] = append(a.Tokens["u_bob"], state.Token{ID: "t_new", Name: state.Some("ci")})
		}, "tokens of user u_bob"},
		"an email now taken": {func(a *state.Actual) {
			a.Users = append(a.Users, state.User{ID: "u_new", Email: state.Some("erin@acme.test")})
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, c, _ := safeScenario()
			c.Users = slices.Clone(c.Users)
			c.Tokens = map[string][]state.Token{}
			for id, ts := range a.Tokens {
				c.Tokens[id] = slices.Clone(ts)
			}
			tc.change(&c)
			_, err := s.Verify(fetched(c, s))
			require.ErrorIs(t, err, ErrStale)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	// The rest of the account may change: a user the plan does not touch.
	_, c, _ := safeScenario()
	c.Users = slices.Clone(c.Users)
	userByID(&c, "u_gina").Name = state.Some("Changed")
	userByID(&c, "u_gina").UpdatedAt++
	_, err := s.Verify(fetched(c, s))
	require.NoError(t, err)
}

func userByID(a *state.Actual, id string) *state.User {
	for i := range a.Users {
		if a.Users[i].ID == id {
			return &a.Users[i]
		}
	}
	panic("no user " + id)
}

func TestLeaseUsersAreNeverPlanned(t *testing.T) {
	d, a, o := safeScenario()
	want, err := Compute(d, a, o)
	require.NoError(t, err)
	lease := state.User{ID: "u_lease", CreatedAt: 5, UpdatedAt: 5, Email: state.Some(state.LeaseEmail(gOwner)), Meta: gMeta()}
	other := state.User{ID: "u_lease2", CreatedAt: 5, UpdatedAt: 5, Email: state.Some(state.LeaseEmail("other-team")), Meta: gMeta()}
	a.Users = append(a.Users, lease, other)
	got, err := Compute(d, a, o)
	require.NoError(t, err)
	assert.Equal(t, wireJSON(t, want), wireJSON(t, got), "a lease is never an orphan, a delete, or counted as owned")
}

// TestChangesShowWhatIsSent: for every update the plan shows, the fields listed are
// exactly what its body changes on the remote object, so no view can differ from what
// is sent (a field sent with the value it already has changes nothing and is not
// shown). Over the fuzz corpus of FuzzCompute and a spread of generated inputs.
func TestChangesShowWhatIsSent(t *testing.T) {
	for i := range 3000 {
		b := []byte(fmt.Sprintf("%d:%d", i, i*7919))
		for j := range b {
			b[j] = byte(int(b[j])*31 + i*j)
		}
		d, a, o := fuzzInputs(b)
		p, err := Compute(d, a, o)
		if err != nil {
			continue
		}
		assertFieldsAreTheEffect(t, a, &p)
	}
}

// assertFieldsAreTheEffect checks, for each user and token update of p, that applying
// its body to the remote object in a changes exactly the name, description, image and
// meta fields it lists, to the values it lists.
func assertFieldsAreTheEffect(t testing.TB, a state.Actual, p *Plan) {
	t.Helper()
	users := map[string]state.User{}
	for _, u := range a.Users {
		users[u.ID] = u
	}
	for _, up := range p.Users {
		for _, c := range up.Changes {
			var before, after map[string]any
			switch c.Action {
			case UserUpdate, UserAdopt:
				u := users[c.UserID]
				before = userView(u)
				setIfPresent(&u.Name, c.UserBody.Name)
				setIfPresent(&u.Description, c.UserBody.Description)
				setIfPresent(&u.Image, c.UserBody.Image)
				u.Meta = applyMeta(cloneMetaOpt(u.Meta), c.UserBody.Meta, c.UserBody.MetaMerge)
				after = userView(u)
			case TokenUpdate, TokenAdopt:
				i := slices.IndexFunc(a.Tokens[c.UserID], func(tk state.Token) bool { return tk.ID == c.TokenID })
				tk := a.Tokens[c.UserID][i]
				before = tokenView(tk)
				setIfPresent(&tk.Description, c.TokenBody.Description)
				setIfPresent(&tk.Name, c.TokenBody.Name)
				tk.Meta = applyMeta(cloneMetaOpt(tk.Meta), c.TokenBody.Meta, c.TokenBody.MetaMerge)
				after = tokenView(tk)
			default:
				continue
			}
			effect := map[string]string{}
			for k := range joinKeys(before, after) {
				if !state.EqualJSON(before[k], after[k]) {
					effect[k] = jsonString(after[k])
				}
			}
			shown := map[string]string{}
			for _, f := range c.Fields {
				if strings.HasPrefix(f.Field, "limits") {
					continue
				}
				shown[f.Field] = jsonString(f.After)
			}
			if !assert.Equal(t, effect, shown, "%s %s %s: the fields shown are not what the body changes", c.Action, c.Email, c.TokenName) {
				return
			}
		}
	}
}

// userView flattens the compared fields; a meta key that is null equals a missing one,
// as the plan treats them, and the creation nonce is not shown.
func userView(u state.User) map[string]any {
	m := map[string]any{"name": nullEmpty(u.Name), "description": nullEmpty(u.Description), "image": nullEmpty(u.Image)}
	if !u.Description.Present() {
		delete(m, "description")
	}
	if !u.Name.Present() {
		delete(m, "name")
	}
	if !u.Image.Present() {
		delete(m, "image")
	}
	for k, v := range u.Meta.Value() {
		if v != nil {
			m["meta."+k] = v
		}
	}
	return m
}

func tokenView(tk state.Token) map[string]any {
	m := userView(state.User{Description: tk.Description, Meta: tk.Meta})
	delete(m, "meta."+state.NonceKey)
	return m
}

func nullEmpty(o state.Opt[string]) any {
	if v := o.Value(); v != "" {
		return v
	}
	return nil
}

func joinKeys(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func wireJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
