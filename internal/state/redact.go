package state

import (
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"sync"
)

// Redactor removes known secrets from text that leaves the process: every log record,
// error, rendered plan, saved plan and report passes through the one the command
// builds, which learns the API token before anything is read. A secret is found
// plainly, in any letter case, hex-encoded (any case, bytes separated by spaces or
// not, as od and xxd print them) and base64-encoded (standard or URL alphabet, at any
// alignment, wrapped at any column), and so is every piece of it of MinFragment
// characters or more of any of those forms: a text cut short may hold a secret cut in
// two. Safe for concurrent use; the zero value knows no secret.
type Redactor struct {
	mu     sync.RWMutex
	parent *Redactor
	// whole holds each known secret shorter than MinFragment, lower-cased, with its
	// encodings: they are only ever matched whole.
	whole []string
	// windows holds every MinFragment-long piece of every form of each longer secret,
	// lower-cased; first marks the bytes such a piece can start with.
	windows map[string]struct{}
	first   [256]bool
	// shape also removes anything shaped like a ChatBotKit secret (see With).
	shape bool
}

// Redacted is what a secret is replaced with.
const Redacted = redacted

// MinFragment is the shortest piece of a secret that is removed on its own: long
// enough not to match ordinary text, short enough that what is left of a secret is
// worthless (the API's tokens carry 256 random bits).
const MinFragment = 12

// minSecret is the shortest value taken as a secret: shorter ones would redact
// ordinary words.
const minSecret = 4

// NewRedactor returns a Redactor that knows secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		r.Add(s)
	}
	return r
}

// With returns a Redactor that knows r's secrets and secret, and also removes any text
// shaped like a ChatBotKit secret ("sk-" and hex digits): for the output of a command
// that may echo another record's secret, or a cut piece of one.
func (r *Redactor) With(secret string) *Redactor {
	c := NewRedactor(secret)
	c.parent, c.shape = r, true
	return c
}

// Add makes s known. Values shorter than 4 bytes are ignored.
func (r *Redactor) Add(s string) {
	s = strings.TrimSpace(s)
	if len(s) < minSecret || r.Knows(s) {
		return
	}
	forms := secretForms(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(s) < MinFragment {
		r.whole = append(r.whole, forms...)
		return
	}
	if r.windows == nil {
		r.windows = map[string]struct{}{}
	}
	for _, f := range forms {
		for k := 0; k+MinFragment <= len(f); k++ {
			r.windows[f[k:k+MinFragment]] = struct{}{}
			r.first[f[k]] = true
		}
	}
}

// Knows reports whether s is made of known secrets only: Add(s) would add nothing.
func (r *Redactor) Knows(s string) bool {
	out := r.String(s)
	return out != s && strings.ReplaceAll(out, Redacted, "") == ""
}

// Contains reports whether s holds a known secret (or a piece of one).
func (r *Redactor) Contains(s string) bool { return r.String(s) != s }

// secretForms are the lower-cased texts in which s can appear: itself, hex, and base64
// (both alphabets) of s from each of the three byte offsets a base64 encoding can
// start a group at, cut to whole groups so no padding or neighbour bleeds in.
func secretForms(s string) []string {
	plain := strings.ToLower(strings.Join(strings.Fields(s), ""))
	forms := []string{plain, hex.EncodeToString([]byte(s))}
	for shift := range 3 {
		chunk := s[min(shift, len(s)):]
		chunk = chunk[:len(chunk)/3*3]
		if len(chunk)/3*4 < min(MinFragment, 8) {
			continue // too short to tell from ordinary text
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			forms = append(forms, strings.ToLower(enc.EncodeToString([]byte(chunk))))
		}
	}
	return forms
}

// secretShape is a ChatBotKit secret, or a long enough start of one. It starts at a
// word boundary, so a name such as "task-20240101" is not taken for one.
var secretShape = regexp.MustCompile(`(?i)\bsk-[0-9a-f]{8,}`)

// Bytes is String for a byte slice; it returns b itself when nothing was removed.
func (r *Redactor) Bytes(b []byte) []byte {
	s := string(b)
	if out := r.String(s); out != s {
		return []byte(out)
	}
	return b
}

// String returns s with every known secret, in every form, replaced by [REDACTED].
func (r *Redactor) String(s string) string {
	if r == nil || s == "" {
		return s
	}
	if r.parent != nil {
		s = r.parent.String(s)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.shape {
		s = secretShape.ReplaceAllString(s, Redacted)
	}
	if len(r.whole) == 0 && len(r.windows) == 0 {
		return s
	}
	// The view is s lower-cased without white space, so that wrapped base64 and
	// spaced hex read as one run; pos maps it back to s.
	view := make([]byte, 0, len(s))
	pos := make([]int32, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		view, pos = append(view, c), append(pos, int32(i))
	}
	var mark []bool // over view
	cover := func(from, to int) {
		if mark == nil {
			mark = make([]bool, len(view))
		}
		for j := from; j < to; j++ {
			mark[j] = true
		}
	}
	vs := string(view)
	for _, w := range r.whole {
		for off := 0; ; {
			i := strings.Index(vs[off:], w)
			if i < 0 {
				break
			}
			cover(off+i, off+i+len(w))
			off += i + 1
		}
	}
	if len(r.windows) > 0 {
		for i := 0; i+MinFragment <= len(view); i++ {
			if !r.first[view[i]] {
				continue
			}
			if _, ok := r.windows[vs[i:i+MinFragment]]; ok {
				cover(i, i+MinFragment)
			}
		}
	}
	if mark == nil {
		return s
	}
	// Each run of marked view bytes hides the text from its first to its last byte in
	// s, white space between them included.
	var b strings.Builder
	last := 0
	for i := 0; i < len(view); i++ {
		if !mark[i] {
			continue
		}
		j := i
		for j+1 < len(view) && mark[j+1] {
			j++
		}
		from, to := int(pos[i]), int(pos[j])+1
		b.WriteString(s[last:from])
		b.WriteString(Redacted)
		last, i = to, j
	}
	b.WriteString(s[last:])
	return b.String()
}
