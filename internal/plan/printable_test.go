package plan

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"Alice Doe":               "Alice Doe",
		"Zoë 日本 🙂":                "Zoë 日本 🙂",
		`back\slash "q"`:          `back\slash "q"`,
		"a\nb\r\tc":               `a\nb\r\tc`,
		"\x1b[2J\x07\x7f":         `\x1b[2J\x07\x7f`,
		"\u009b2J":                `\u009b2J`,
		"evil\u202egpj.exe":       `evil\u202egpj.exe`,
		"zero\u200bwidth\ufeff":   `zero\u200bwidth\ufeff`,
		"iso\u2066late\u2069":     `iso\u2066late\u2069`,
		"line\u2028para\u2029":    `line\u2028para\u2029`,
		"bad\xffutf8":             `bad\xffutf8`,
		"real \uFFFD replacement": "real \uFFFD replacement",
	} {
		assert.Equal(t, want, Printable(in), "%q", in)
	}
}

// hostileScenario declares and finds values built to forge plan lines or drive the
// reviewer's terminal: newlines followed by a fake change, ESC sequences that clear the
// screen or set the title, C1 CSI, bidi overrides and zero-width characters.
func hostileScenario() (state.Desired, state.Actual, Options) {
	const forge = "\n  + user root@acme.test (u_root)\n      # declared and not found remotely"
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	d := state.Desired{Owner: gOwner, PruneUsers: true, Users: []state.DesiredUser{{
		Email:        state.Some("eve@acme.test"),
		Name:         state.Some("Eve" + forge + "\x1b[2J\x1b[H"),
		Description:  state.Some("first line\n\x1b[31mred\r overwritten\u009b2J"),
		Meta:         state.Some(meta("team\n+ meta.admin", "ops\u202etxt.exe", "z", "a\u200bb")),
		ManageTokens: true,
		Tokens:       []state.DesiredToken{{Name: "ci\x1b]0;pwned\x07" + forge, Description: state.Some("tok\ndesc\x1b[K")}},
	}}}
	a := state.Actual{Users: []state.User{{
		ID: "u_gone\x1b[2J", CreatedAt: 1, UpdatedAt: 1, Email: state.Some("gone\u202e@acme.test" + forge),
		Meta: gMeta(),
	}}, Tokens: map[string][]state.Token{}}
	return d, a, DefaultOptions(now)
}

// benign replaces every character Printable would escape with a plain letter, keeping
// the layout the values would have if they were harmless.
func benign(d state.Desired, a state.Actual) (state.Desired, state.Actual) {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if unprintable(r) && r != '\n' {
				return 'x'
			}
			return r
		}, s)
	}
	u := d.Users[0]
	oneLine := func(s string) string { return strings.ReplaceAll(clean(s), "\n", "x") }
	u.Name = state.Some(oneLine(u.Name.Value()))
	u.Description = state.Some(clean(u.Description.Value())) // keeps its newlines: a description is shown as lines
	m := state.Meta{}
	for k, v := range u.Meta.Value() {
		m[oneLine(k)] = oneLine(v.(string))
	}
	u.Meta = state.Some(m)
	u.Tokens = []state.DesiredToken{{Name: oneLine(u.Tokens[0].Name), Description: state.Some(clean(u.Tokens[0].Description.Value()))}}
	d.Users = []state.DesiredUser{u}
	r := a.Users[0]
	r.ID, r.Email = oneLine(r.ID), state.Some(oneLine(r.Email.Value()))
	a.Users = []state.User{r}
	return d, a
}

// TestRenderEscapesHostileValues: no value can add a line to, or put a control or
// format character into, the text or Markdown plan. The hostile plan has exactly the
// lines of the same plan with harmless values, and no character a terminal acts on.
func TestRenderEscapesHostileValues(t *testing.T) {
	d, a, o := hostileScenario()
	p, err := Compute(d, a, o)
	require.NoError(t, err)
	bd, ba := benign(d, a)
	bp, err := Compute(bd, ba, o)
	require.NoError(t, err)

	for _, view := range []struct {
		name   string
		render func(*bytes.Buffer, *Plan) error
	}{
		{"text", func(b *bytes.Buffer, p *Plan) error { return RenderText(b, p, TextOptions{}) }},
		{"markdown", func(b *bytes.Buffer, p *Plan) error { return RenderMarkdown(b, p) }},
	} {
		var hostile, plain bytes.Buffer
		require.NoError(t, view.render(&hostile, &p))
		require.NoError(t, view.render(&plain, &bp))
		out := hostile.String()
		for _, r := range out {
			if r != '\n' && (unprintable(r) || unicode.Is(unicode.Cf, r)) {
				t.Errorf("%s view: raw %U in the output:\n%s", view.name, r, out)
				break
			}
		}
		assert.Equal(t, strings.Count(plain.String(), "\n"), strings.Count(out, "\n"), "%s view: a value added lines:\n%s", view.name, out)
		assert.NotContains(t, out, "\n  + user root@acme.test", "%s view: a forged change line", view.name)
	}
	// The colour view escapes the values but keeps its own colour codes.
	var b bytes.Buffer
	require.NoError(t, RenderText(&b, &p, TextOptions{Color: true}))
	assert.NotContains(t, b.String(), "\x1b[2J")
	assert.Contains(t, b.String(), ansiGreen)
}
