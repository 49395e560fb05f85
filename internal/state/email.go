package state

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// EmailProblem says why the platform would refuse s as a user's email, or "" when it
// accepts it. It is the platform's own check, Joi's
// email({tlds: false, allowFullyQualified: false}) (docs/partner-api.md, "Email
// syntax"), and the one check the loader, export and the emulator share, so a plan never
// promises what the platform's create refuses:
//   - one "@"; at most 254 characters in all (UTF-16 units, as JavaScript counts) and 64
//     bytes before the "@";
//   - the local part is dot-separated non-empty atoms of letters, digits and
//     !#$%&'*+-/=?^_`{|}~ (or any non-ASCII character); no quoted strings;
//   - the domain has two or more labels of letters, digits and "-", neither first nor
//     last, at most 63 characters each; the last label starts with a letter; so no "_",
//     no IP literal, no trailing dot. A non-ASCII domain is judged in its ASCII
//     (punycode) form, as the platform does through the URL parser.
//
// Joi is written by hand here because no Go library implements its rules: net/mail
// accepts "a@localhost", "b@x_y.test", "c@[1.2.3.4]" and "d@-x.test", all of which
// the platform refuses with 400.
func EmailProblem(s string) string {
	if s == "" {
		return "it is empty"
	}
	if !utf8.ValidString(s) {
		return "it is not valid UTF-8"
	}
	ascii := isASCII(s)
	if !ascii {
		s = norm.NFC.String(s)
	}
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case !ok:
		return `it has no "@"`
	case strings.Contains(domain, "@"):
		return `it has more than one "@"`
	case local == "":
		return `nothing stands before the "@"`
	case len(utf16.Encode([]rune(s))) > 254:
		return "it is longer than 254 characters"
	case len(local) > 64:
		return `the part before the "@" is longer than 64 bytes`
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" {
			return `the part before the "@" has an empty dot-separated part (a leading, trailing or doubled ".")`
		}
		for _, r := range atom {
			if r < utf8.RuneSelf && !atext(byte(r)) {
				return `the part before the "@" has the character ` + quoteRune(r) + `, which the platform does not accept there`
			}
		}
	}
	return domainProblem(domain)
}

func domainProblem(domain string) string {
	if domain == "" {
		return `nothing stands after the "@"`
	}
	if len(domain) > 256 {
		return "the domain is longer than 256 characters"
	}
	if strings.ContainsAny(domain, "[]") {
		return "the domain is an IP literal, not a name"
	}
	if !isASCII(domain) {
		a, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			return "the domain is not a valid international domain name"
		}
		domain = a
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "the domain has one label; the platform requires at least two, such as example.com"
	}
	for i, l := range labels {
		switch {
		case l == "":
			return `the domain has an empty label (a leading, trailing or doubled ".")`
		case len(l) > 63:
			return "the domain label " + quote(l) + " is longer than 63 characters"
		case l[0] == '-' || l[len(l)-1] == '-':
			return "the domain label " + quote(l) + ` starts or ends with "-"`
		case i == len(labels)-1 && !isLetter(l[0]):
			return "the last domain label " + quote(l) + " does not start with a letter"
		}
		for j := 0; j < len(l); j++ {
			if c := l[j]; !isLetter(c) && !isDigit(c) && c != '-' {
				return "the domain has the character " + quoteRune(rune(c)) + "; domain labels take only letters, digits and \"-\""
			}
		}
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// atext is RFC 5322's atext, the characters Joi allows in an unquoted local part.
func atext(c byte) bool {
	return isLetter(c) || isDigit(c) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func quote(s string) string { return `"` + s + `"` }

func quoteRune(r rune) string {
	if r < ' ' || r == 0x7f {
		return fmt.Sprintf("U+%04X", r)
	}
	return strconv.Quote(string(r))
}
