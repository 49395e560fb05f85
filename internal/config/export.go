package config

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Export renders users (and, when tokens != nil, their tokens) as a valid config for
// owner, to bootstrap the files from an account that already has users. The marker and
// nonce meta keys are stripped and users are sorted by email, so the output loads back
// and, for users and tokens owned by owner, plans to no changes.
//
// Only what is set remotely is written: a null or unknown field is left out, so it stays
// unmanaged. A user whose entry in tokens is missing is written without `tokens` (its
// tokens were not read); an empty entry gives `tokens: []`. What the format cannot hold
// is skipped with a comment saying why: a user without an email or with an email that
// another user has in another case (the owned, else the oldest, is kept), a token without a name or with a name another token
// of the user has, and meta keys that the loader refuses.
func Export(owner string, users []state.User, tokens map[string][]state.Token) ([]byte, error) {
	if !ownerRE.MatchString(owner) {
		return nil, fmt.Errorf("cannot export for owner %q: an owner is 1 to 63 characters of a-z, 0-9 and -", owner)
	}
	sorted := append([]state.User(nil), users...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].Email.Value(), sorted[j].Email.Value()
		if ka, kb := state.EmailKey(a), state.EmailKey(b); ka != kb {
			return ka < kb
		}
		// Emails that differ only in case cannot both be declared: keep the user this
		// owner already manages, else the oldest.
		if oa, ob := sorted[i].Owner() == owner, sorted[j].Owner() == owner; oa != ob {
			return oa
		}
		if sorted[i].CreatedAt != sorted[j].CreatedAt {
			return sorted[i].CreatedAt < sorted[j].CreatedAt
		}
		return sorted[i].ID < sorted[j].ID
	})

	list := &yaml.Node{Kind: yaml.SequenceNode}
	var skipped []string
	seen := map[string]bool{}
	for _, u := range sorted {
		email := u.Email.Value()
		switch key := state.EmailKey(email); {
		case state.EmailProblem(email) != "":
			skipped = append(skipped, fmt.Sprintf("user %s: its email %q is not a valid address: %s", u.ID, email, state.EmailProblem(email)))
			continue
		case seen[key]:
			skipped = append(skipped, fmt.Sprintf("user %s: its email %q differs only in case from another user's", u.ID, email))
			continue
		default:
			seen[key] = true
		}
		un, notes := exportUser(u, tokens)
		if len(notes) > 0 {
			un.HeadComment = strings.Join(notes, "\n")
		}
		list.Content = append(list.Content, un)
	}
	if len(list.Content) == 0 {
		list.Style = yaml.FlowStyle
	}

	doc := mappingNode(
		"version", &yaml.Node{Kind: yaml.ScalarNode, Tag: tagInt, Value: "1"},
		"owner", strNode(owner),
		"users", list,
	)
	doc.HeadComment = "Exported by cbk-sync from the remote state: null and unknown remote fields are left\nout (unmanaged). Review it before committing.\n" +
		"Aliases cannot be exported: the platform never returns them. Every update clears the\nalias of a user that does not declare one, so add `alias:` to each user that has one."
	if len(skipped) > 0 {
		doc.FootComment = "Not exported:\n" + strings.Join(skipped, "\n")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return buf.Bytes(), nil
}

func exportUser(u state.User, tokens map[string][]state.Token) (*yaml.Node, []string) {
	n := mappingNode("email", strNode(escapeEnv(u.Email.Value())))
	var notes []string
	addString(n, "name", u.Name)
	addString(n, "description", u.Description)
	addString(n, "image", u.Image)
	m, dropped := exportMeta(u.Meta)
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
		return n, notes
	}
	ts, read := tokens[u.ID]
	if !read {
		return n, notes
	}
	ts = append([]state.Token(nil), ts...)
	sort.SliceStable(ts, func(i, j int) bool {
		if a, b := ts[i].Name.Value(), ts[j].Name.Value(); a != b {
			return a < b
		}
		return ts[i].CreatedAt < ts[j].CreatedAt
	})
	list := &yaml.Node{Kind: yaml.SequenceNode}
	names := map[string]bool{}
	for _, t := range ts {
		name := t.Name.Value()
		switch {
		case name == "":
			notes = append(notes, fmt.Sprintf("token %s not exported: it has no name", t.ID))
			continue
		case names[name]:
			notes = append(notes, fmt.Sprintf("token %s not exported: another token of this user is also named %q", t.ID, name))
			continue
		}
		names[name] = true
		tn := mappingNode("name", strNode(escapeEnv(name)))
		addString(tn, "description", t.Description)
		m, dropped := exportMeta(t.Meta)
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
	addPair(n, "tokens", list)
	return n, notes
}

// exportMeta returns the meta as a node, without the keys cbk-sync writes itself and
// the keys the loader refuses (named in dropped); nil when nothing is left.
func exportMeta(o state.Opt[state.Meta]) (*yaml.Node, []string) {
	m, ok := o.Get()
	if !ok {
		return nil, nil
	}
	n := &yaml.Node{Kind: yaml.MappingNode}
	var dropped []string
	for _, k := range m.SortedKeys() {
		switch {
		case state.CbkSyncMetaKey(k):
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
