package config

import (
	"fmt"
	"strings"
)

// expand replaces ${VAR} and ${VAR:-default} in s with values from lookup, and $${
// with a literal ${. As in the shell, the default is used when VAR is unset or empty.
// changed reports whether s contained anything to expand or unescape, because an
// expanded scalar is typed by its field rather than by how YAML resolved the template.
func expand(s string, lookup func(string) (string, bool)) (out string, changed bool, err error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", false, fmt.Errorf(`unterminated "${" in %q: close it with "}", or write "$${" for a literal "${"`, s)
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validVarName(name) {
				return "", false, fmt.Errorf(`invalid variable name %q in "${%s}": use letters, digits and _, not starting with a digit (write "$${" for a literal "${")`, name, ref)
			}
			v, ok := lookup(name)
			if !ok || (hasDef && v == "") {
				if !hasDef {
					return "", false, fmt.Errorf("environment variable %s is not set: set it, or give a default with ${%s:-value}", name, name)
				}
				v = def
			}
			b.WriteString(v)
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), true, nil
}

// escapeEnv makes s load back as itself: every "${" becomes "$${".
func escapeEnv(s string) string { return strings.ReplaceAll(s, "${", "$${") }

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
