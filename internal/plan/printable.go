package plan

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable returns s with every character that could change how a terminal or a
// rendered page shows the text around it written as an escape: C0 and C1 control
// characters (newline, carriage return, ESC, CSI...), DEL, format characters (bidi
// overrides and isolates, zero-width spaces and joiners, soft hyphens, BOM), the
// Unicode line and paragraph separators, and bytes that are not UTF-8. Every human view
// (text and Markdown plans, log lines, error lines) passes names, descriptions, emails,
// meta keys and values, and remote text through it, so no value can forge a line or
// clear the reviewer's screen. Backslashes are left alone: an escape-like text in a
// value reads the same as an escape, but it cannot start a new line.
//
// Written by hand because strconv.Quote, which escapes much the same characters, also
// wraps the value in quotes and escapes every quote and backslash, which would make
// ordinary names and descriptions harder to review.
func Printable(s string) string {
	i := firstUnprintable(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unprintable(r):
			b.WriteString(s[i : i+size])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

func firstUnprintable(s string) int {
	for i, r := range s {
		if unprintable(r) || (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD")) {
			return i
		}
	}
	return -1
}

// unprintable reports a rune Printable escapes.
func unprintable(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r < 0x80:
		return false
	case r == '\u2028', r == '\u2029':
		return true
	}
	return unicode.Is(unicode.Cf, r)
}
