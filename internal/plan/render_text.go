package plan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/sergi/go-diff/diffmatchpatch"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TextOptions are the choices of the text view that the command makes for it.
type TextOptions struct {
	// Color enables ANSI colours; the command sets it only on a terminal without
	// NO_COLOR or --no-color.
	Color bool
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiPurple = "\x1b[35m"
)

func actionColor(a Action) string {
	switch a {
	case UserCreate, TokenCreate:
		return ansiGreen
	case UserUpdate, TokenUpdate:
		return ansiYellow
	case UserDelete, TokenRevoke:
		return ansiRed
	case UserAdopt, TokenAdopt, UserRelease, TokenRelease:
		return ansiCyan
	case TokenRotate:
		return ansiPurple
	}
	return ""
}

type textWriter struct {
	w     *bufio.Writer
	color bool
}

func (t *textWriter) paint(code, s string) string {
	if !t.color || code == "" {
		return s
	}
	return code + s + ansiReset
}

func (t *textWriter) line(indent int, s string) {
	t.w.WriteString(strings.Repeat(" ", indent))
	t.w.WriteString(s)
	t.w.WriteByte('\n')
}

// RenderText writes the human view of p: one block per user, then orphans, warnings,
// unsafe reasons and the summary line.
func RenderText(w io.Writer, p *Plan, o TextOptions) error {
	t := &textWriter{w: bufio.NewWriter(w), color: o.Color}
	for i := range p.Users {
		t.user(&p.Users[i])
		t.w.WriteByte('\n')
	}
	if len(p.Orphans) > 0 {
		t.line(0, t.paint(ansiBold, "Orphaned users (owned, no action):"))
		for _, o := range p.Orphans {
			t.line(2, orphanLine(o))
		}
		t.w.WriteByte('\n')
	}
	if len(p.Warnings) > 0 {
		t.line(0, t.paint(ansiYellow+ansiBold, "Warnings:"))
		for _, s := range p.Warnings {
			t.line(2, t.paint(ansiYellow, "! "+Printable(s)))
		}
		t.w.WriteByte('\n')
	}
	if !p.Safety.Safe {
		t.line(0, t.paint(ansiRed+ansiBold, "Unsafe: this plan will not be applied:"))
		for _, s := range p.Safety.Reasons {
			t.line(2, t.paint(ansiRed, "x "+Printable(s)))
		}
		t.w.WriteByte('\n')
	}
	if line := secretsLine(p); line != "" {
		t.line(0, line)
	}
	if line := p.UncheckedLine(); line != "" {
		t.line(0, t.paint(ansiYellow, line))
	}
	if p.Account != nil && p.Account.Seen > 0 {
		t.line(0, p.Account.Line())
	}
	sum := p.Summary()
	if sum.Total() > 0 {
		t.line(0, t.paint(ansiDim, releaseLegend(sum)))
	}
	// "No changes ... matches" after "Unsafe" would contradict it: a refused plan says
	// only what it refuses.
	if sum.Total() > 0 || p.Safety.Safe {
		t.line(0, t.paint(ansiBold, SummaryLine(sum)))
	}
	return t.w.Flush()
}

// SummaryLine is the one-line count of a plan's changes that ends every text plan.
func SummaryLine(s Summary) string {
	if s.Total() == 0 {
		return "No changes. Remote state matches the configuration."
	}
	// The noun agrees with the first count of its group: "1 user to create, 2 to
	// update", "2 users to create".
	// Releases are counted only in a plan that has any, so that every other summary
	// line reads as it always did.
	var userRelease, tokenRelease string
	if s.UserRelease+s.TokenRelease > 0 {
		userRelease = fmt.Sprintf(", %d to release", s.UserRelease)
		tokenRelease = fmt.Sprintf(", %d to release", s.TokenRelease)
	}
	return fmt.Sprintf("Plan: %s to create, %d to update, %d to delete, %d to adopt%s; %s to create, %d to update, %d to adopt, %d to revoke, %d to rotate%s.",
		Count(s.UserCreate, "user", "users"), s.UserUpdate, s.UserDelete, s.UserAdopt, userRelease,
		Count(s.TokenCreate, "token", "tokens"), s.TokenUpdate, s.TokenAdopt, s.TokenRevoke, s.TokenRotate, tokenRelease)
}

// Count is n and the singular or plural noun: "1 user", "0 users", "2 users".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// secretsLine says where the secrets of the plan's new tokens go, or "" when the plan
// creates none or the destination is not known.
func secretsLine(p *Plan) string {
	s := p.Summary()
	if p.SecretsTo == nil || s.TokenCreate+s.TokenRotate == 0 {
		return ""
	}
	return "Secrets of new tokens go to " + p.SecretsTo.Describe() + "."
}

func orphanLine(o Orphan) string {
	s := userTitle(o.Identity, o.Email, o.UserID)
	if o.Reason != "" {
		s += ": " + Printable(o.Reason)
	}
	return s
}

// displayEmail is an email as every human view shows it, escaped by Printable.
func displayEmail(e string) string {
	if e == "" {
		return "(no email)"
	}
	return Printable(e)
}

// displayUser names a user as every human view shows it: by its email under an email
// identity (as before there were others), else by its kind and value, with its email
// after it when it has one.
func displayUser(id state.Identity, email string) string {
	if id.Kind == state.ByEmail {
		return displayEmail(id.Value)
	}
	s := id.Kind.String() + " " + Printable(id.Value)
	if email != "" {
		s += ", email " + Printable(email)
	}
	return s
}

// userTitle is displayUser with the user's platform ID in brackets, unless the
// identity is that ID.
func userTitle(id state.Identity, email, userID string) string {
	s := displayUser(id, email)
	if userID != "" && id.Kind != state.ByID {
		s += " (" + Printable(userID) + ")"
	}
	return s
}

func userHeader(up *UserPlan) (Action, string) {
	return up.UserAction(), "user " + userTitle(up.Identity, up.Email, up.UserID)
}

func tokenHeader(c *Change) string {
	name := Printable(c.TokenName)
	if name == "" {
		name = "(no name)"
	}
	s := "token " + name
	if c.TokenID != "" {
		s += " (" + Printable(c.TokenID) + ")"
	}
	return s
}

func (t *textWriter) user(up *UserPlan) {
	act, head := userHeader(up)
	t.line(2, t.paint(actionColor(act), act.Symbol()+" "+t.paint(ansiBold, head)))
	for _, c := range displayOrder(up) {
		if !c.Action.IsToken() {
			t.line(6, t.paint(ansiDim, "# "+Printable(c.Reason)))
			t.fields(6, c)
			continue
		}
		t.line(4, t.paint(actionColor(c.Action), c.Action.Symbol()+" "+tokenHeader(c)))
		t.line(8, t.paint(ansiDim, "# "+Printable(c.Reason)))
		t.fields(8, c)
	}
}

// isCreation reports whether a change's fields have no meaningful before value.
func isCreation(a Action) bool { return a == UserCreate || a == TokenCreate || a == TokenRotate }

func (t *textWriter) fields(indent int, c *Change) {
	for _, f := range c.Fields {
		before, after := fieldStrings(c.Action, f)
		field := Printable(f.Field)
		if multiLine(f) {
			t.line(indent, field+":")
			for _, dl := range lineDiff(before, after) {
				code := ""
				switch dl.op {
				case '-':
					code = ansiRed
				case '+':
					code = ansiGreen
				}
				t.line(indent+2, t.paint(code, string(dl.op)+" "+Printable(dl.text)))
			}
			continue
		}
		switch {
		case isCreation(c.Action) || f.BeforeUnknown:
			t.line(indent, field+": "+t.paint(ansiGreen, formatValue(f.After)))
		default:
			t.line(indent, field+": "+t.paint(ansiRed, formatValue(f.Before))+" -> "+t.paint(ansiGreen, formatValue(f.After)))
		}
	}
}

// fieldStrings returns the before and after values of a multi-line string field as
// text ("" for null or none).
func fieldStrings(a Action, f FieldChange) (string, string) {
	b, _ := f.Before.(string)
	if isCreation(a) || f.BeforeUnknown {
		b = ""
	}
	af, _ := f.After.(string)
	return b, af
}

// multiLine reports a description field whose value spans lines, which the views show
// as a line diff. Any other field (a name, a meta value) shows its newlines escaped, so
// a value can never lay out lines of its own in a view.
func multiLine(f FieldChange) bool {
	if f.Field != "description" {
		return false
	}
	b, _ := f.Before.(string)
	a, _ := f.After.(string)
	return strings.Contains(b, "\n") || strings.Contains(a, "\n")
}

// formatValue shows a value as compact JSON: strings quoted, null as null, and what
// JSON leaves raw (C1 controls, bidi and zero-width characters) escaped by Printable.
func formatValue(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return Printable(fmt.Sprintf("%v", v))
	}
	return Printable(strings.TrimSuffix(buf.String(), "\n"))
}

type diffLine struct {
	op   byte // ' ', '-' or '+'
	text string
}

// lineDiff is a line-by-line diff of before and after, every line kept (descriptions
// are short, so hunks with elided context would only hide what a reviewer needs).
func lineDiff(before, after string) []diffLine {
	dmp := diffmatchpatch.New()
	a, b, lines := dmp.DiffLinesToChars(before, after)
	diffs := dmp.DiffCharsToLines(dmp.DiffMain(a, b, false), lines)
	var out []diffLine
	for _, d := range diffs {
		op := byte(' ')
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			op = '-'
		case diffmatchpatch.DiffInsert:
			op = '+'
		}
		text := strings.TrimSuffix(d.Text, "\n")
		if d.Text == "" {
			continue
		}
		for _, l := range strings.Split(text, "\n") {
			out = append(out, diffLine{op: op, text: l})
		}
	}
	return out
}
