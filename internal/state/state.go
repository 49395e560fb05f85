package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
)

// OwnerKey is the meta key that marks a user or token as created or adopted by
// cbk-sync for one owner scope.
const OwnerKey = "cbkSyncOwner"

// NonceKey is the meta key holding a one-time nonce written into a token at creation,
// so that a create whose answer was lost can be found again without a blind retry.
const NonceKey = "cbkSyncNonce"

// PendingKey is the meta key that marks a token created but not yet confirmed: apply
// writes it true at creation and clears it (null) only once the secret is delivered
// durably. A token still marked never had its secret delivered, as far as anyone can
// know, so plans treat it as undelivered.
const PendingKey = "cbkSyncPending"

// CbkSyncMetaKey reports whether k is one of the meta keys cbk-sync sets itself
// (owner marker, nonce, pending mark), which a configuration may not declare.
func CbkSyncMetaKey(k string) bool { return k == OwnerKey || k == NonceKey || k == PendingKey }

// Meta is a free-form JSON object. Values are in encoding/json's decoded form
// (string, float64, bool, nil, []any, map[string]any); use NormalizeMeta on values
// from other sources (YAML) before comparing.
type Meta map[string]any

// Clone returns a shallow copy of m (nil stays nil).
func (m Meta) Clone() Meta {
	if m == nil {
		return nil
	}
	c := make(Meta, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// SortedKeys returns the keys of m in lexical order.
func (m Meta) SortedKeys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// NormalizeMeta converts any JSON-compatible value tree into encoding/json's decoded
// form, so that values from YAML (int, map[string]any) compare equal to values read
// from the API (float64, map[string]any).
func NormalizeMeta(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// EqualJSON reports whether a and b encode to the same canonical JSON (map keys are
// sorted by encoding/json, so the comparison does not depend on map order).
func EqualJSON(a, b any) bool {
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// Limits are a user's quotas: a JSON object in encoding/json's decoded form (numbers
// float64, objects map[string]any), like Meta. The keys the platform knows
// (LimitPaths) are whole numbers 0 or more, or null, inside the sections database, file
// and attachment; every other key, at any depth, is kept as it was read, so that an
// update, which replaces the whole object, sends it back unchanged (OverlayLimits).
// The platform stores numbers as JavaScript doubles, so float64 loses nothing.
type Limits map[string]any

// LimitPaths are the limits the platform knows, as dotted paths, in display order.
var LimitPaths = []string{
	"tokens", "conversations", "messages",
	"database.datasets", "database.records", "database.skillsets", "database.abilities", "database.files",
	"file.maxFileSize", "attachment.maxFileSize",
}

// LimitSections are the known limits that are objects rather than numbers.
var LimitSections = []string{"database", "file", "attachment"}

// MaxLimit is the largest whole number a limit may be: the platform holds numbers as
// doubles, which are exact up to 2^53-1 (JavaScript's Number.MAX_SAFE_INTEGER).
const MaxLimit = 1<<53 - 1

// Clone returns a deep copy of l (nil stays nil).
func (l Limits) Clone() Limits {
	if l == nil {
		return nil
	}
	return Limits(cloneTree(map[string]any(l)).(map[string]any))
}

// Lookup returns the value at a dotted path (LimitPaths) and whether it is there.
func (l Limits) Lookup(path string) (any, bool) {
	var cur any = map[string]any(l)
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// CheckLimits reports the first known limit of l that is not a whole number from 0 to
// MaxLimit or null, or a known section that is not an object or null: the rule for
// declared limits, where null means "no such limit".
func CheckLimits(l Limits) error { return checkLimits(l, true) }

// CheckWireLimits is CheckLimits for a limits object on the wire: the platform's
// schema makes its known keys and sections optional, not nullable, so a null there is a
// 400 that fails the whole update ("no such limit" is the object without the key).
func CheckWireLimits(l Limits) error { return checkLimits(l, false) }

func checkLimits(l Limits, nullOK bool) error {
	for _, sec := range LimitSections {
		if v, ok := l[sec]; ok {
			if _, isObj := v.(map[string]any); !isObj && (v != nil || !nullOK) {
				return fmt.Errorf("limits.%s must be an object%s, not %s", sec, orNullText(nullOK), jsonText(v))
			}
		}
	}
	for _, p := range LimitPaths {
		v, ok := l.Lookup(p)
		if !ok || (v == nil && nullOK) {
			continue
		}
		f, isNum := v.(float64)
		if !isNum || f < 0 || f > MaxLimit || f != math.Trunc(f) {
			return fmt.Errorf("limits.%s must be a whole number from 0 to %d%s, not %s", p, int64(MaxLimit), orNullText(nullOK), jsonText(v))
		}
	}
	return nil
}

func orNullText(nullOK bool) string {
	if nullOK {
		return " or null"
	}
	return ""
}

// WireLimits is what a create sends for declared limits: the object without the keys
// declared null, since a null is refused on the wire (CheckWireLimits).
func WireLimits(declared Limits) Limits {
	return OverlayLimits(nil, declared)
}

// OverlayLimits lays the declared limits over the remote ones and returns a new
// object: the API replaces the whole object on update, so every remote key that is not
// declared — at any depth, known or unknown — must be sent back. A declared object is
// merged into a remote object key by key; a declared number replaces the remote one; a
// declared null removes the key ("no such limit": the platform refuses null for a
// known key). A null the remote object holds at a known key or section is dropped too,
// so the object sent always passes CheckWireLimits.
func OverlayLimits(remote, declared Limits) Limits {
	out := remote.Clone()
	if out == nil {
		out = Limits{}
	}
	overlayTree(out, declared)
	for _, sec := range LimitSections {
		if v, ok := out[sec]; ok && v == nil {
			delete(out, sec)
		}
	}
	for _, p := range LimitPaths {
		if v, ok := out.Lookup(p); ok && v == nil {
			parent, key := map[string]any(out), p
			if sec, k, nested := strings.Cut(p, "."); nested {
				parent, key = out[sec].(map[string]any), k
			}
			delete(parent, key)
		}
	}
	return out
}

func overlayTree(dst, src map[string]any) {
	for k, v := range src {
		sv, srcObj := v.(map[string]any)
		dv, dstObj := dst[k].(map[string]any)
		switch {
		case v == nil:
			delete(dst, k)
		case srcObj && dstObj:
			overlayTree(dv, sv)
		case srcObj:
			dst[k] = cloneTree(sv)
		default:
			dst[k] = v
		}
	}
}

func cloneTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[k] = cloneTree(e)
		}
		return c
	case Limits:
		return cloneTree(map[string]any(x))
	case Meta:
		return cloneTree(map[string]any(x))
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = cloneTree(e)
		}
		return c
	}
	return v
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// User is a partner user (sub-account) as the API returns it.
type User struct {
	ID          string      `json:"id"`
	CreatedAt   int64       `json:"createdAt,omitempty"` // ms since epoch
	UpdatedAt   int64       `json:"updatedAt,omitempty"` // ms since epoch
	Email       Opt[string] `json:"email,omitzero"`
	Name        Opt[string] `json:"name,omitzero"`
	Description Opt[string] `json:"description,omitzero"`
	Image       Opt[string] `json:"image,omitzero"`
	Meta        Opt[Meta]   `json:"meta,omitzero"`
	Limits      Opt[Limits] `json:"limits,omitzero"`
}

// EmailKey is the identity key of a user: its email with ASCII letters lower-cased and
// ASCII spaces trimmed. Only ASCII folds: Unicode case folding (strings.ToLower,
// strings.EqualFold) maps look-alikes such as the Kelvin sign U+212A onto "k", which
// would let a declared "\u212aate@acme.test" match, and adopt, an undeclared user
// "kate@acme.test".
func EmailKey(email string) string {
	email = strings.Trim(email, " \t\r\n\v\f")
	for i := 0; i < len(email); i++ {
		if c := email[i]; 'A' <= c && c <= 'Z' {
			b := []byte(email)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return email
}

// Owner returns the value of the ownership marker, or "" when there is none.
func (u User) Owner() string { return metaOwner(u.Meta) }

// UserFields is the body of a user create or update. Absent fields are not sent.
// When MetaMerge is true, Meta is sent as {"$update": meta}, which the API merges
// shallowly into the stored meta instead of replacing it.
type UserFields struct {
	// Alias is write-only on the platform, and an update without it clears it.
	Alias       Opt[string] `json:"alias,omitzero"`
	Email       Opt[string] `json:"email,omitzero"`
	Name        Opt[string] `json:"name,omitzero"`
	Description Opt[string] `json:"description,omitzero"`
	Image       Opt[string] `json:"image,omitzero"`
	Meta        Opt[Meta]   `json:"meta,omitzero"`
	MetaMerge   bool        `json:"metaMerge,omitempty"`
	Limits      Opt[Limits] `json:"limits,omitzero"`
}

// WireJSON returns the request body as the API expects it (with $update for a merge).
func (f UserFields) WireJSON() ([]byte, error) {
	type wire struct {
		Alias       Opt[string] `json:"alias,omitzero"`
		Email       Opt[string] `json:"email,omitzero"`
		Name        Opt[string] `json:"name,omitzero"`
		Description Opt[string] `json:"description,omitzero"`
		Image       Opt[string] `json:"image,omitzero"`
		Meta        any         `json:"meta,omitempty"`
		Limits      Opt[Limits] `json:"limits,omitzero"`
	}
	return json.Marshal(wire{f.Alias, f.Email, f.Name, f.Description, f.Image, wireMeta(f.Meta, f.MetaMerge), f.Limits})
}

// Token is a partner user's API token as the list answer shows it (never the secret).
type Token struct {
	ID          string      `json:"id"`
	CreatedAt   int64       `json:"createdAt,omitempty"`
	UpdatedAt   int64       `json:"updatedAt,omitempty"`
	Name        Opt[string] `json:"name,omitzero"`
	Description Opt[string] `json:"description,omitzero"`
	Meta        Opt[Meta]   `json:"meta,omitzero"`
}

// Owner returns the value of the ownership marker, or "" when there is none.
func (t Token) Owner() string { return metaOwner(t.Meta) }

// Pending reports whether the token carries the pending mark (PendingKey set to
// anything but null or false): created, and its secret not confirmed delivered.
func (t Token) Pending() bool {
	v, ok := t.Meta.Value()[PendingKey]
	return ok && v != nil && v != false
}

// TokenFields is the body of a token create or update (see UserFields for MetaMerge).
type TokenFields struct {
	Name        Opt[string] `json:"name,omitzero"`
	Description Opt[string] `json:"description,omitzero"`
	Meta        Opt[Meta]   `json:"meta,omitzero"`
	MetaMerge   bool        `json:"metaMerge,omitempty"`
}

// WireJSON returns the request body as the API expects it (with $update for a merge).
func (f TokenFields) WireJSON() ([]byte, error) {
	type wire struct {
		Name        Opt[string] `json:"name,omitzero"`
		Description Opt[string] `json:"description,omitzero"`
		Meta        any         `json:"meta,omitempty"`
	}
	return json.Marshal(wire{f.Name, f.Description, wireMeta(f.Meta, f.MetaMerge)})
}

// CreatedToken is the answer of a token create: the only time the secret is seen.
type CreatedToken struct {
	ID        string `json:"id"`
	Token     Secret `json:"token"`
	CreatedAt int64  `json:"createdAt"`
}

// Actual is the remote state a plan is computed against.
type Actual struct {
	Users []User `json:"users"`
	// Tokens holds the token lists that were read, by user ID. A user whose tokens
	// were not read has no entry (which differs from an empty list).
	Tokens map[string][]Token `json:"tokens"`
	// Aliases holds the answers of `GET user/@ALIAS/fetch` for the declared aliases of
	// existing users, the only way to see an alias (list and fetch never return it):
	// the ID of the user the alias names, or "" when no user has it (404). An alias
	// that was not looked up has no entry, and is never planned.
	Aliases map[string]string `json:"aliases,omitempty"`
}

// ValidAlias reports whether s is an alias the platform accepts and cbk-sync can look
// up: 1 to 128 characters of a-z, 0-9, _ and -. (The platform's pattern allows an empty
// alias too, which no `@alias` lookup can find.)
func ValidAlias(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// Secret is a credential (the API token, a created token's secret). Every way of
// printing it — fmt verbs, JSON, slog — shows a redaction; only Reveal gives the value.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret value. Call it only where the secret must leave the
// process: the Authorization header and the secrets sink.
func (s Secret) Reveal() string { return string(s) }

// String hides the secret from fmt's %v, %s, %q, %x.
func (s Secret) String() string { return redacted }

// GoString hides the secret from fmt's %#v.
func (s Secret) GoString() string { return redacted }

// MarshalJSON hides the secret from encoding/json.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// UnmarshalJSON reads a secret from an API answer.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Secret(v)
	return nil
}

// LogValue hides the secret from log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

func metaOwner(m Opt[Meta]) string {
	v, ok := m.Get()
	if !ok {
		return ""
	}
	s, _ := v[OwnerKey].(string)
	return s
}

func wireMeta(m Opt[Meta], merge bool) any {
	switch {
	case m.Absent():
		return nil
	case m.IsNull():
		return json.RawMessage("null")
	case merge:
		return map[string]any{"$update": m.Value()}
	default:
		return m.Value()
	}
}

// isWordByte reports whether b is a word character as JavaScript's \w defines it,
// [A-Za-z0-9_], which is the class the platform tests a meta key's first character
// against (a non-ASCII letter is not one).
func isWordByte(b byte) bool {
	return b == '_' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}

// MetaKeyKeptOnUpdate reports whether the platform keeps a top-level meta key that an
// update sends: it silently drops a key whose first character is not a word character
// (`-`, `#`, `$`, a space, a non-ASCII letter...). A key starting with `_` is kept by
// this rule but refused with 400 by another (see MetaKeyReserved).
func MetaKeyKeptOnUpdate(k string) bool { return k == "" || isWordByte(k[0]) }

// MetaKeyReserved reports whether the platform refuses a top-level meta key with 400:
// one that starts with `_`.
func MetaKeyReserved(k string) bool { return strings.HasPrefix(k, "_") }

// MetaKeyHidden reports whether the platform hides a meta key on read, at any depth:
// one that starts with `#`.
func MetaKeyHidden(k string) bool { return strings.HasPrefix(k, "#") }
