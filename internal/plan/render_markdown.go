package plan

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// RenderMarkdown writes p for a pull-request comment or $GITHUB_STEP_SUMMARY: an
// unsafe banner when needed, a summary table, and a collapsible diff block per user.
func RenderMarkdown(w io.Writer, p *Plan) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "### cbk-sync plan for `%s`\n\n", mdCode(Printable(p.Owner)))
	if !p.Safety.Safe {
		b.WriteString("> [!CAUTION]\n> **Unsafe plan: it will not be applied.**\n>\n")
		for _, r := range p.Safety.Reasons {
			fmt.Fprintf(b, "> - %s\n", mdEscape(Printable(r)))
		}
		b.WriteString("\n")
	}
	s := p.Summary()
	fmt.Fprintf(b, "**%s**\n\n", SummaryLine(s))
	if s.Total() > 0 {
		b.WriteString("| | Create | Update | Delete / revoke | Adopt | Rotate |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(b, "| Users | %d | %d | %d | %d | – |\n", s.UserCreate, s.UserUpdate, s.UserDelete, s.UserAdopt)
		fmt.Fprintf(b, "| Tokens | %d | %d | %d | – | %d |\n\n", s.TokenCreate, s.TokenUpdate, s.TokenRevoke, s.TokenRotate)
	}
	for i := range p.Users {
		mdUser(b, &p.Users[i])
	}
	if len(p.Orphans) > 0 {
		b.WriteString("#### Orphaned users\n\nOwned by this owner, with no action.\n\n")
		for _, o := range p.Orphans {
			fmt.Fprintf(b, "- `%s` (`%s`)", mdCode(displayEmail(o.Email)), mdCode(Printable(o.UserID)))
			if o.Reason != "" {
				b.WriteString(": " + mdEscape(Printable(o.Reason)))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(p.Warnings) > 0 {
		b.WriteString("#### Warnings\n\n")
		for _, s := range p.Warnings {
			fmt.Fprintf(b, "- %s\n", mdEscape(Printable(s)))
		}
		b.WriteString("\n")
	}
	return b.Flush()
}

// mdEscape keeps text from being read as HTML; quotes stay readable in the raw
// comment.
var mdEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// mdCode keeps a value inside an inline code span.
func mdCode(s string) string { return strings.ReplaceAll(s, "`", "'") }

func mdUser(b *bufio.Writer, up *UserPlan) {
	act, _ := userHeader(up)
	tokens := 0
	for _, c := range up.Changes {
		if c.Action.IsToken() {
			tokens++
		}
	}
	var what []string
	if act != NoOp {
		what = append(what, strings.TrimPrefix(act.String(), "user_"))
	}
	if tokens == 1 {
		what = append(what, "1 token change")
	} else if tokens > 1 {
		what = append(what, fmt.Sprintf("%d token changes", tokens))
	}
	fmt.Fprintf(b, "<details><summary><code>%s</code> <b>%s</b>: %s</summary>\n\n",
		mdEscape(act.Symbol()), mdEscape(displayEmail(up.Email)), strings.Join(what, ", "))

	var lines []string
	add := func(mark byte, indent int, s string) {
		lines = append(lines, string(mark)+" "+strings.Repeat(" ", indent)+s)
	}
	_, head := userHeader(up)
	headMark := func(a Action) byte {
		switch a {
		case UserCreate, TokenCreate:
			return '+'
		case UserDelete, TokenRevoke:
			return '-'
		}
		return ' '
	}
	first := true
	for i := range up.Changes {
		c := &up.Changes[i]
		indent := 4
		if c.Action.IsToken() {
			if first {
				add(' ', 0, head)
			}
			add(headMark(c.Action), 2, c.Action.Symbol()+" "+tokenHeader(c)+"  # "+Printable(c.Reason))
			indent = 6
		} else {
			add(headMark(c.Action), 0, c.Action.Symbol()+" "+head+"  # "+Printable(c.Reason))
		}
		first = false
		for _, f := range c.Fields {
			field := Printable(f.Field)
			if multiLine(f) {
				before, after := fieldStrings(c.Action, f)
				add(' ', indent, field+":")
				for _, dl := range lineDiff(before, after) {
					add(dl.op, indent+2, Printable(dl.text))
				}
				continue
			}
			if !isCreation(c.Action) && !f.BeforeUnknown {
				add('-', indent, field+": "+formatValue(f.Before))
			}
			add('+', indent, field+": "+formatValue(f.After))
		}
	}
	body := strings.Join(lines, "\n")
	fence := "```"
	for strings.Contains(body, fence) {
		fence += "`"
	}
	fmt.Fprintf(b, "%sdiff\n%s\n%s\n\n</details>\n\n", fence, body, fence)
}
