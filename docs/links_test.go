// Package docs holds the user documentation (Markdown) and the tests that keep it
// honest: every relative link and anchor in README.md and docs/*.md resolves inside
// the repository, and every page is reachable from the README.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// pages are the Markdown files whose links are checked, relative to the repository root.
func pages(t *testing.T) []string {
	t.Helper()
	ps, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	out := append([]string{"../README.md"}, ps...)
	if len(out) < 2 {
		t.Fatal("no docs/*.md found")
	}
	return out
}

var (
	fence      = regexp.MustCompile("^\\s*(```|~~~)")
	inlineCode = regexp.MustCompile("`+[^`]*`+")
	// [text](target) or ![alt](target); the text may hold brackets of its own only
	// as inline code, which is removed first.
	link    = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	heading = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
)

// prose returns the lines of a Markdown file outside fenced code blocks, with their
// line numbers (1-based).
func prose(text string) (lines []string, numbers []int) {
	in := false
	for i, l := range strings.Split(text, "\n") {
		if fence.MatchString(l) {
			in = !in
			continue
		}
		if !in {
			lines = append(lines, l)
			numbers = append(numbers, i+1)
		}
	}
	return lines, numbers
}

// slug is GitHub's anchor of a heading: the rendered text lower-cased, every character
// that is not a letter, digit, space, hyphen or underscore removed, spaces made hyphens.
func slug(h string) string {
	h = strings.NewReplacer("`", "", "**", "", "__", "").Replace(h)
	// A link in a heading renders as its text.
	h = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors GitHub gives the headings of a Markdown file, with the
// -1, -2 ... suffixes of repeated headings.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	lines, _ := prose(text)
	for _, l := range lines {
		m := heading.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(m[2])
		if n := seen[s]; n > 0 {
			out[s+"-"+itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func absolute(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type docLink struct {
	file   string
	line   int
	target string
}

func links(t *testing.T, file string) []docLink {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []docLink
	lines, numbers := prose(string(b))
	for i, l := range lines {
		l = inlineCode.ReplaceAllString(l, "")
		for _, m := range link.FindAllStringSubmatch(l, -1) {
			out = append(out, docLink{file, numbers[i], m[1]})
		}
	}
	return out
}

// TestLinksResolve fails on a relative link of README.md or docs/*.md whose file is
// not in the repository, or whose #anchor names no heading of its page. Links out of
// the repository (http:, https:, mailto:) are not followed.
func TestLinksResolve(t *testing.T) {
	checked := 0
	root := absolute(t, "..")
	for _, file := range pages(t) {
		for _, l := range links(t, file) {
			if u := strings.ToLower(l.target); strings.HasPrefix(u, "http://") ||
				strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "mailto:") {
				continue
			}
			checked++
			path, anchor, _ := strings.Cut(l.target, "#")
			dest := file
			if path != "" {
				if filepath.IsAbs(path) {
					t.Errorf("%s:%d: %s: an absolute path does not resolve on GitHub; make it relative", l.file, l.line, l.target)
					continue
				}
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s:%d: %s: %s does not exist in the repository", l.file, l.line, l.target, dest)
					continue
				}
				if rel, err := filepath.Rel(root, absolute(t, dest)); err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s:%d: %s: points outside the repository", l.file, l.line, l.target)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s:%d: %s: an anchor into a file that is not Markdown", l.file, l.line, l.target)
				continue
			}
			b, err := os.ReadFile(dest)
			if err != nil {
				t.Errorf("%s:%d: %s: %v", l.file, l.line, l.target, err)
				continue
			}
			if !anchors(string(b))[anchor] {
				t.Errorf("%s:%d: %s: no heading of %s has the anchor #%s", l.file, l.line, l.target, dest, anchor)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d relative links checked: the link pattern no longer matches the pages", checked)
	}
}

// TestEveryPageIsLinkedFromTheReadme: a page no one can find is not documentation.
func TestEveryPageIsLinkedFromTheReadme(t *testing.T) {
	linked := map[string]bool{}
	for _, l := range links(t, "../README.md") {
		path, _, _ := strings.Cut(l.target, "#")
		linked[filepath.Clean(path)] = true
	}
	for _, p := range pages(t)[1:] {
		if !linked[filepath.Join("docs", p)] {
			t.Errorf("docs/%s is not linked from README.md", p)
		}
	}
}

// TestSlug pins the anchor rule against headings of the kinds the pages use.
func TestSlug(t *testing.T) {
	for h, want := range map[string]string{
		"Shell completion and the man page":           "shell-completion-and-the-man-page",
		"Concurrent runs, the lock and saved plans":   "concurrent-runs-the-lock-and-saved-plans",
		"Pagination, cursors and JSONL streams":       "pagination-cursors-and-jsonl-streams",
		"The `--base` flag (a PR plan)":               "the---base-flag-a-pr-plan",
		"Users: fields, alias, meta and limits":       "users-fields-alias-meta-and-limits",
		"CI: pull requests, scheduled reconciliation": "ci-pull-requests-scheduled-reconciliation",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
	a := anchors("# A\n## B\n```\n## C\n```\n## B\n")
	for _, want := range []string{"a", "b", "b-1"} {
		if !a[want] {
			t.Errorf("anchors: no %q in %v", want, a)
		}
	}
	if a["c"] {
		t.Errorf("anchors: a heading inside a code block counted: %v", a)
	}
}

// TestNoPlaceholders: a page that says it is unfinished is not documentation.
func TestNoPlaceholders(t *testing.T) {
	for _, file := range pages(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			low := strings.ToLower(l)
			for _, p := range []string{"to be written", "todo", "tbd", "lorem ipsum", "fixme"} {
				if strings.Contains(low, p) {
					t.Errorf("%s:%d: placeholder %q: %s", file, i+1, p, l)
				}
			}
		}
	}
}

// TestCodeCommentsCiteRepositoryFiles: a comment of a Go file that names a Markdown
// file names one that is in the repository (a path from the root, or the name of a
// file somewhere in it), not a document a reader of the repository cannot open.
func TestCodeCommentsCiteRepositoryFiles(t *testing.T) {
	root := absolute(t, "..")
	names := map[string]bool{}
	var goFiles []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "dist") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			names[d.Name()] = true
			if strings.HasSuffix(p, ".go") {
				goFiles = append(goFiles, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cite := regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b`)
	cited := 0
	for _, f := range goFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			_, comment, ok := strings.Cut(l, "//")
			if !ok {
				continue
			}
			for _, m := range cite.FindAllString(comment, -1) {
				m = strings.TrimPrefix(m, "./")
				cited++
				if strings.Contains(m, "/") {
					if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(m))); err != nil {
						rel, _ := filepath.Rel(root, f)
						t.Errorf("%s:%d: the comment cites %s, which is not in the repository", rel, i+1, m)
					}
				} else if !names[m] {
					rel, _ := filepath.Rel(root, f)
					t.Errorf("%s:%d: the comment cites %s, which is not in the repository", rel, i+1, m)
				}
			}
		}
	}
	if cited == 0 {
		t.Error("no comment cites a Markdown file: the pattern is wrong")
	}
}
