package plan

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// MarkdownOptions shape the Markdown view.
type MarkdownOptions struct {
	// MaxBytes caps the output (0: no cap). A plan that would be longer is cut at a user
	// boundary and ends with a note of what was left out; the title, the unsafe banner
	// and the summary table are always kept. GitHub refuses a comment over 65,536
	// characters, so a PR comment wants a little less than that.
	MaxBytes int
	// FullPlanURL, when set, is where the note says the full plan is (the CI run that
	// holds it as an artifact, say).
	FullPlanURL string
}

// RenderMarkdown writes p for a pull-request comment or $GITHUB_STEP_SUMMARY: an
// unsafe banner when needed, a summary table, and a collapsible diff block per user.
func RenderMarkdown(w io.Writer, p *Plan) error {
	return RenderMarkdownWith(w, p, MarkdownOptions{})
}

// RenderMarkdownWith is RenderMarkdown with options, such as a byte cap.
func RenderMarkdownWith(w io.Writer, p *Plan, o MarkdownOptions) error {
	var head strings.Builder
	fmt.Fprintf(&head, "### cbk-sync plan for `%s`\n\n", mdCode(Printable(p.Owner)))
	if !p.Safety.Safe {
		head.WriteString("> [!CAUTION]\n> **Unsafe plan: it will not be applied.**\n>\n")
		for _, r := range p.Safety.Reasons {
			fmt.Fprintf(&head, "> - %s\n", mdEscape(Printable(r)))
		}
		head.WriteString("\n")
	}
	s := p.Summary()
	fmt.Fprintf(&head, "**%s**\n\n", SummaryLine(s))
	if s.Total() > 0 {
		if s.UserRelease+s.TokenRelease == 0 {
			head.WriteString("| | Create | Update | Delete / revoke | Adopt | Rotate |\n")
			head.WriteString("|---|---:|---:|---:|---:|---:|\n")
			fmt.Fprintf(&head, "| Users | %d | %d | %d | %d | – |\n", s.UserCreate, s.UserUpdate, s.UserDelete, s.UserAdopt)
			fmt.Fprintf(&head, "| Tokens | %d | %d | %d | %d | %d |\n\n", s.TokenCreate, s.TokenUpdate, s.TokenRevoke, s.TokenAdopt, s.TokenRotate)
		} else {
			// The Release column only when the plan releases something, so that every
			// other plan's table stays as it was.
			head.WriteString("| | Create | Update | Delete / revoke | Adopt | Rotate | Release |\n")
			head.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
			fmt.Fprintf(&head, "| Users | %d | %d | %d | %d | – | %d |\n", s.UserCreate, s.UserUpdate, s.UserDelete, s.UserAdopt, s.UserRelease)
			fmt.Fprintf(&head, "| Tokens | %d | %d | %d | %d | %d | %d |\n\n", s.TokenCreate, s.TokenUpdate, s.TokenRevoke, s.TokenAdopt, s.TokenRotate, s.TokenRelease)
		}
	}
	if line := secretsLine(p); line != "" {
		head.WriteString(mdEscape(line) + "\n\n")
	}
	if p.Account != nil && p.Account.Seen > 0 {
		head.WriteString(mdEscape(p.Account.Line()) + "\n\n")
	}
	if line := p.UncheckedLine(); line != "" {
		head.WriteString("> [!NOTE]\n> " + mdEscape(line) + "\n\n")
	}
	users := make([]string, len(p.Users))
	total := head.Len()
	for i := range p.Users {
		var b strings.Builder
		mdUser(&b, &p.Users[i])
		users[i] = b.String()
		total += b.Len()
	}
	orphans, warnings := mdOrphans(p), mdWarnings(p)
	total += len(orphans) + len(warnings)

	b := bufio.NewWriter(w)
	b.WriteString(head.String())
	if o.MaxBytes <= 0 || total <= o.MaxBytes {
		for _, u := range users {
			b.WriteString(u)
		}
		b.WriteString(orphans)
		b.WriteString(warnings)
		return b.Flush()
	}

	// Cut: the warnings matter more to a reviewer than the orphan list, and both more
	// than one more user's diff, so they are kept first when they fit; then as many
	// whole users as the cap leaves room for, in plan order.
	budget := o.MaxBytes - head.Len()
	keepWarnings := len(warnings)+len(mdTruncated(p, o, 0, false, false)) <= budget
	if keepWarnings {
		budget -= len(warnings)
	}
	keepOrphans := len(orphans)+len(mdTruncated(p, o, 0, !keepWarnings, false)) <= budget
	if keepOrphans {
		budget -= len(orphans)
	}
	shown, used := 0, 0
	for shown < len(users) {
		next := used + len(users[shown])
		if next+len(mdTruncated(p, o, shown+1, !keepWarnings, !keepOrphans)) > budget {
			break
		}
		used = next
		shown++
	}
	for _, u := range users[:shown] {
		b.WriteString(u)
	}
	if keepOrphans {
		b.WriteString(orphans)
	}
	if keepWarnings {
		b.WriteString(warnings)
	}
	b.WriteString(mdTruncated(p, o, shown, !keepWarnings, !keepOrphans))
	return b.Flush()
}

// mdTruncated is the note that ends a cut plan: how many users (and their changes) and
// which sections were left out, and where the full plan is.
func mdTruncated(p *Plan, o MarkdownOptions, shown int, noWarnings, noOrphans bool) string {
	left := p.Users[min(shown, len(p.Users)):]
	userChanges, tokenChanges := 0, 0
	for i := range left {
		for _, c := range left[i].Changes {
			if c.Action.IsToken() {
				tokenChanges++
			} else {
				userChanges++
			}
		}
	}
	var n strings.Builder
	fmt.Fprintf(&n, "> [!NOTE]\n> **This plan was cut to fit %d bytes.** %d of %d users are shown; ", o.MaxBytes, len(p.Users)-len(left), len(p.Users))
	fmt.Fprintf(&n, "%d %s left out (%s, %s)", len(left), plural(len(left), "user is", "users are"),
		plural2(userChanges, "user change"), plural2(tokenChanges, "token change"))
	if noWarnings && len(p.Warnings) > 0 {
		fmt.Fprintf(&n, ", and %s", plural2(len(p.Warnings), "warning"))
	}
	if noOrphans && len(p.Orphans) > 0 {
		fmt.Fprintf(&n, ", and %s", plural2(len(p.Orphans), "orphaned user"))
	}
	n.WriteString(". The summary above counts the whole plan.\n>\n")
	if o.FullPlanURL != "" {
		fmt.Fprintf(&n, "> The full plan: <%s>\n", mdEscape(o.FullPlanURL))
	} else {
		n.WriteString("> The full plan: run `cbk-sync plan` (or `-o json`) with the same files.\n")
	}
	return n.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// plural2 is "1 thing" or "N things".
func plural2(n int, one string) string {
	return fmt.Sprintf("%d %s", n, plural(n, one, one+"s"))
}

func mdOrphans(p *Plan) string {
	if len(p.Orphans) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("#### Orphaned users\n\nOwned by this owner, with no action.\n\n")
	for _, o := range p.Orphans {
		if o.Identity.Kind == state.ByID {
			fmt.Fprintf(&b, "- `%s`", mdCode(displayUser(o.Identity, o.Email)))
		} else {
			fmt.Fprintf(&b, "- `%s` (`%s`)", mdCode(displayUser(o.Identity, o.Email)), mdCode(Printable(o.UserID)))
		}
		if o.Reason != "" {
			b.WriteString(": " + mdEscape(Printable(o.Reason)))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.String()
}

func mdWarnings(p *Plan) string {
	if len(p.Warnings) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("#### Warnings\n\n")
	for _, s := range p.Warnings {
		fmt.Fprintf(&b, "- %s\n", mdEscape(Printable(s)))
	}
	b.WriteString("\n")
	return b.String()
}

// mdEscape keeps text from being read as HTML; quotes stay readable in the raw
// comment.
var mdEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// mdCode keeps a value inside an inline code span.
func mdCode(s string) string { return strings.ReplaceAll(s, "`", "'") }

func mdUser(b *strings.Builder, up *UserPlan) {
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
		mdEscape(act.Symbol()), mdEscape(displayUser(up.Identity, up.Email)), strings.Join(what, ", "))

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
	for _, c := range displayOrder(up) {
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
