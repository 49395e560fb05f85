package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ExportOptions choose what Export writes.
type ExportOptions struct {
	// Owner is the owner scope of the configuration.
	Owner string
	// Identity is how each user is named where it can be (the file's precedence still
	// applies: a user whose meta holds an external id is written with `externalId`,
	// since the file may not declare that meta key, and that outranks its email):
	// ByEmail, the default, names a user by its email where it has one that can be
	// declared, else by its id; ByExternalID by its external id, else its id; ByID
	// every user by its id.
	Identity state.IdentityKind
	// ExternalIDKey is the meta key of external ids ("" is state.DefaultExternalIDKey);
	// another than the default is written as the file's externalIdKey.
	ExternalIDKey string
	// Remote is every remote user a plan of the file will see (foreign ones included,
	// the lock's left out): an email or external id that two of them have cannot name
	// either, by the rule of state.UserIndex. Nil means the users exported.
	Remote []state.User
}

// Export renders users (and, when tokens != nil, their tokens) as a valid config, to
// bootstrap the files from an account that already has users, and returns it with the
// number of users written. Every user is written, email or not, with an identity that
// finds it again (see ExportOptions), so the file plans no create and no delete; the
// marker and nonce meta keys are stripped, so users and tokens owned by the owner plan
// no change. Users come sorted by email, those without one last.
//
// Only what is set remotely is written: a null or unknown field is left out, so it stays
// unmanaged. A user whose entry in tokens is missing is written without `tokens` (its
// tokens were not read); an empty entry gives `tokens: []`. What the format cannot hold
// is left unmanaged with a comment saying why: an email that is not a valid address or
// that another user has in another case, an external id that is not text or that
// another user has, a token without a name or another than the one a plan keeps among
// same-named tokens (state.PreferToken), and meta keys that the loader refuses.
func Export(o ExportOptions, users []state.User, tokens map[string][]state.Token) ([]byte, int, error) {
	if !ownerRE.MatchString(o.Owner) {
		return nil, 0, fmt.Errorf("cannot export for owner %q: an owner is 1 to 63 characters of a-z, 0-9 and -", o.Owner)
	}
	key := o.ExternalIDKey
	if key == "" {
		key = state.DefaultExternalIDKey
	}
	if why := externalIDKeyProblem(key); why != "" {
		return nil, 0, fmt.Errorf("cannot export with the external id key %q: %s", key, why)
	}
	sorted := slices.Clone(users)
	slices.SortStableFunc(sorted, func(a, b state.User) int {
		ea, eb := a.Email.Value(), b.Email.Value()
		if (ea == "") != (eb == "") {
			return cmp.Compare(boolInt(ea == ""), boolInt(eb == ""))
		}
		return cmp.Or(strings.Compare(state.EmailKey(ea), state.EmailKey(eb)),
			cmp.Compare(boolInt(a.Owner() != o.Owner), boolInt(b.Owner() != o.Owner)),
			cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	// An email or external id that several remote users have cannot name any of them:
	// the plan would refuse it (state.UserIndex holds that rule).
	remote := o.Remote
	if remote == nil {
		remote = sorted
	}
	idx := state.NewUserIndex(remote, key)
	taken := func(id state.Identity) bool {
		_, err := idx.Find(id)
		return err != nil
	}

	list := &yaml.Node{Kind: yaml.SequenceNode}
	var skipped []string
	for i := range sorted {
		u := &sorted[i]
		un, notes, ok := exportUser(o, key, u, tokens, taken)
		if !ok {
			skipped = append(skipped, notes...)
			continue
		}
		if len(notes) > 0 {
			un.HeadComment = strings.Join(notes, "\n")
		}
		list.Content = append(list.Content, un)
	}
	if len(list.Content) == 0 {
		list.Style = yaml.FlowStyle
	}

	kv := []any{"version", &yaml.Node{Kind: yaml.ScalarNode, Tag: tagInt, Value: "1"}, "owner", strNode(o.Owner)}
	if key != state.DefaultExternalIDKey {
		kv = append(kv, "externalIdKey", strNode(key))
	}
	doc := mappingNode(append(kv, "users", list)...)
	doc.HeadComment = "Exported by cbk-sync from the remote state: null and unknown remote fields are left\nout (unmanaged). Review it before committing.\n" +
		"Each user is named by its externalId, email or id (the platform's user id); under an\nid or externalId the email is an ordinary field, and changing it is one update.\n" +
		"Aliases cannot be exported: the platform never returns them. Every update clears the\nalias of a user that does not declare one, so add `alias:` to each user that has one."
	if len(skipped) > 0 {
		doc.FootComment = "Not exported:\n" + strings.Join(skipped, "\n")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
		return nil, 0, fmt.Errorf("export: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, 0, fmt.Errorf("export: %w", err)
	}
	return buf.Bytes(), len(list.Content), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// declarableEmail reports whether the loader accepts e as a user's email.
func declarableEmail(e string) bool {
	return e != "" && emailCharProblem(e) == "" && state.EmailProblem(e) == "" && !strings.HasSuffix(state.EmailKey(e), "@"+state.LeaseDomain)
}

// exportIdentity writes the keys that name u: its id when asked or when nothing else
// can name it, its external id and its email when they can be declared and no other
// remote user has them (taken). It returns the notes on what could not be, and false
// when u cannot be named at all.
func exportIdentity(o ExportOptions, key string, u *state.User, taken func(state.Identity) bool) (*yaml.Node, []string, bool) {
	var notes []string
	email := u.Email.Value()
	useEmail := false
	switch {
	case email == "":
	case !declarableEmail(email):
		why := state.EmailProblem(email)
		if why == "" {
			why = "the configuration cannot declare it"
		}
		notes = append(notes, fmt.Sprintf("its email %q is not a valid address (%s): left unmanaged", email, why))
	case taken(state.Identity{Kind: state.ByEmail, Value: email}):
		notes = append(notes, fmt.Sprintf("its email %q is another user's too, in some case: left unmanaged", email))
	default:
		useEmail = true
	}
	ext, hasExt := state.ExternalIDOf(u, key)
	useExt := false
	if v, present := u.Meta.Value()[key]; present && v != nil {
		switch {
		case !hasExt:
			b, _ := json.Marshal(v)
			notes = append(notes, fmt.Sprintf("meta key %q is not a text external id (%s): not exported (it is kept remotely)", key, b))
		case taken(state.Identity{Kind: state.ByExternalID, Value: ext}):
			notes = append(notes, fmt.Sprintf("its %s %q is another user's too: not exported (it is kept remotely)", key, ext))
		case len(ext) > maxIdentityLen:
			notes = append(notes, fmt.Sprintf("its %s is longer than %d bytes: not exported (it is kept remotely)", key, maxIdentityLen))
		default:
			useExt = true
		}
	}
	writeID := o.Identity == state.ByID || (!useExt && !(useEmail && o.Identity == state.ByEmail))
	n := &yaml.Node{Kind: yaml.MappingNode}
	if writeID {
		if why := idProblem(u.ID); why != "" {
			return nil, []string{fmt.Sprintf("user %q: its id cannot be declared (%s) and nothing else names it", u.ID, why)}, false
		}
		addPair(n, "id", strNode(u.ID))
	}
	if useExt {
		addPair(n, "externalId", strNode(escapeEnv(ext)))
	}
	if useEmail {
		addPair(n, "email", strNode(escapeEnv(email)))
	}
	return n, notes, true
}

func exportUser(o ExportOptions, key string, u *state.User, tokens map[string][]state.Token, taken func(state.Identity) bool) (*yaml.Node, []string, bool) {
	n, notes, ok := exportIdentity(o, key, u, taken)
	if !ok {
		return nil, notes, false
	}
	addString(n, "name", u.Name)
	addString(n, "description", u.Description)
	addString(n, "image", u.Image)
	m, dropped := exportMeta(u.Meta, key)
	if m != nil {
		addPair(n, "meta", m)
	}
	notes = append(notes, dropped...)
	if l, ok := u.Limits.Get(); ok {
		ln, lnotes := exportLimits(l)
		if ln != nil {
			addPair(n, "limits", ln)
		}
		notes = append(notes, lnotes...)
	}
	if tokens == nil {
		return n, notes, true
	}
	ts, read := tokens[u.ID]
	if !read {
		return n, notes, true
	}
	list, tnotes := exportTokens(o.Owner, ts)
	addPair(n, "tokens", list)
	return n, append(notes, tnotes...), true
}

// exportTokens writes, for each name, the token a plan keeps among the user's tokens
// of that name (state.PreferToken), so that the file and the plan agree on which one
// the declaration is; the others are named in notes.
func exportTokens(owner string, ts []state.Token) (*yaml.Node, []string) {
	var notes []string
	best := map[string]int{}
	var names []string
	for i := range ts {
		t := &ts[i]
		name := t.Name.Value()
		switch {
		case name == "":
			notes = append(notes, fmt.Sprintf("token %s not exported: it has no name", t.ID))
			continue
		case !state.TokenKeepable(t, owner):
			notes = append(notes, fmt.Sprintf("token %s not exported: it was created but its secret was never confirmed delivered (a plan revokes it)", t.ID))
			continue
		}
		b, seen := best[name]
		if !seen {
			names = append(names, name)
			best[name] = i
		} else if state.PreferToken(t, &ts[b], owner) {
			best[name] = i
		}
	}
	for i := range ts {
		t := &ts[i]
		if b, ok := best[t.Name.Value()]; ok && b != i && state.TokenKeepable(t, owner) {
			notes = append(notes, fmt.Sprintf("token %s not exported: token %s is the one named %q a plan keeps (owned, then newest)", t.ID, ts[b].ID, t.Name.Value()))
		}
	}
	slices.Sort(names)
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, name := range names {
		t := &ts[best[name]]
		tn := mappingNode("name", strNode(escapeEnv(name)))
		addString(tn, "description", t.Description)
		m, dropped := exportMeta(t.Meta, "")
		if m != nil {
			addPair(tn, "meta", m)
		}
		for _, d := range dropped {
			notes = append(notes, fmt.Sprintf("token %q: %s", name, d))
		}
		list.Content = append(list.Content, tn)
	}
	if len(list.Content) == 0 {
		list.Style = yaml.FlowStyle
	}
	return list, notes
}

// exportMeta returns the meta as a node, without the keys cbk-sync writes itself, the
// key of external ids (extKey, "" for a token's meta; written as `externalId` or named
// in a note) and the keys the loader refuses (named in dropped); nil when nothing is left.
func exportMeta(o state.Opt[state.Meta], extKey string) (*yaml.Node, []string) {
	m, ok := o.Get()
	if !ok {
		return nil, nil
	}
	n := &yaml.Node{Kind: yaml.MappingNode}
	var dropped []string
	for _, k := range m.SortedKeys() {
		switch {
		case state.CbkSyncMetaKey(k) || (extKey != "" && k == extKey):
			continue
		case k == "" || state.MetaKeyReserved(k) || !state.MetaKeyKeptOnUpdate(k) || strings.Contains(k, "."):
			dropped = append(dropped, fmt.Sprintf("meta key %q not exported: the format does not allow it (it is kept remotely)", k))
			continue
		}
		var v yaml.Node
		if err := v.Encode(escapeValue(m[k])); err != nil {
			dropped = append(dropped, fmt.Sprintf("meta key %q not exported: %v", k, err))
			continue
		}
		n.Content = append(n.Content, strNode(k), &v)
	}
	if len(n.Content) == 0 {
		return nil, dropped
	}
	return n, dropped
}

// escapeValue makes every string of a meta value load back as itself.
func escapeValue(v any) any {
	switch v := v.(type) {
	case string:
		return escapeEnv(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = escapeValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = escapeValue(e)
		}
		return out
	}
	return v
}

// exportLimits returns the known limits of l as a node (nil when none is set), and a
// note for each remote key the format cannot declare: unknown keys, and known ones that
// are not whole numbers. Those stay as they are remotely, since a limits update lays the
// declared keys over the remote object.
func exportLimits(l state.Limits) (*yaml.Node, []string) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	var notes []string
	known := map[string]bool{}
	for _, k := range []string{"tokens", "conversations", "messages"} {
		known[k] = true
		notes = addLimit(n, k, l[k], "limits.", notes)
	}
	for _, sec := range limitSections {
		known[sec.key] = true
		sm, _ := l[sec.key].(map[string]any)
		sn := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		kk := map[string]bool{}
		for _, spec := range objects[sec.obj] {
			kk[spec.name] = true
			if v, ok := sm[spec.name]; ok {
				notes = addLimit(sn, spec.name, v, "limits."+sec.key+".", notes)
			}
		}
		for _, k := range state.Meta(sm).SortedKeys() {
			if !kk[k] {
				notes = append(notes, fmt.Sprintf("limit %s.%s not exported: the format does not know it (updates keep it remotely)", sec.key, k))
			}
		}
		if len(sn.Content) > 0 {
			addPair(n, sec.key, sn)
		}
	}
	for _, k := range state.Meta(l).SortedKeys() {
		if !known[k] {
			notes = append(notes, fmt.Sprintf("limit %s not exported: the format does not know it (updates keep it remotely)", k))
		}
	}
	if len(n.Content) == 0 {
		return nil, notes
	}
	return n, notes
}

// addLimit adds a known limit that is a whole number from 0 to state.MaxLimit; a null
// one is left out (unmanaged), anything else gets a note.
func addLimit(m *yaml.Node, key string, v any, prefix string, notes []string) []string {
	switch f, ok := v.(float64); {
	case v == nil:
	case ok && f >= 0 && f <= state.MaxLimit && f == math.Trunc(f):
		addPair(m, key, &yaml.Node{Kind: yaml.ScalarNode, Tag: tagInt, Value: strconv.FormatInt(int64(f), 10)})
	default:
		notes = append(notes, fmt.Sprintf("limit %s%s not exported: %v is not a whole number from 0 to %d", strings.TrimPrefix(prefix, "limits."), key, v, int64(state.MaxLimit)))
	}
	return notes
}

func mappingNode(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		addPair(n, kv[i].(string), kv[i+1].(*yaml.Node))
	}
	return n
}

func addPair(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, strNode(key), v)
}

// strNode is a string scalar; the encoder quotes it when it would otherwise read back
// as another type ("123", "true", "null").
func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tagStr, Value: s}
}

func addString(m *yaml.Node, key string, o state.Opt[string]) {
	if s, ok := o.Get(); ok {
		addPair(m, key, strNode(escapeEnv(s)))
	}
}
