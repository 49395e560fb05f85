package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// YAML parsing and its errors: one problem per file, at the position the
// parser names, with what to do.

// parse reads the file's one YAML document and returns its root node, or nil after
// reporting why there is none.
func (d *decoder) parse(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; a config error must not
		// crash the tool.
		if r := recover(); r != nil {
			d.errorAt(state.Pos{File: d.file, Line: 1, Column: 1}, "the YAML parser failed (%v): check the file's syntax", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorAt(state.Pos{File: d.file}, `the file is empty: a config needs at least "version: 1" and "owner"`)
		} else {
			d.yamlError(err, data)
		}
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if err != nil || line == 0 {
			line = secondDocLine(data)
		}
		d.errorAt(state.Pos{File: d.file, Line: line, Column: 1},
			`a second YAML document starts here: put one document in each file (several files can be given, or a directory)`)
		return nil
	}
	if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == tagNull) {
		d.errorAt(state.Pos{File: d.file}, `the file is empty: a config needs at least "version: 1" and "owner"`)
		return nil
	}
	return doc.Content[0]
}

// secondDocLine finds the "---" that starts a second document, for when yaml.v3 does
// not say (the second document failed to parse).
func secondDocLine(data []byte) int {
	line, seen := 0, false
	for l := range bytes.Lines(data) {
		line++
		t := bytes.TrimRight(l, "\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			if seen {
				return line
			}
			seen = true
		} else if !seen && len(bytes.TrimSpace(t)) > 0 && t[0] != '#' && t[0] != '%' {
			seen = true // the first document started without "---"
		}
	}
	return 1
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a yaml.v3 syntax error into a positioned Error. yaml.v3 gives a
// line only, and not always the right one for tabs and control characters, so those
// are located by scanning the text.
func (d *decoder) yamlError(err error, data []byte) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	switch {
	case strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token"):
		if p, ok := findTab(data); ok {
			d.errorAt(state.Pos{File: d.file, Line: p.Line, Column: p.Column},
				"a tab character in the indentation: YAML indents with spaces only; replace the tab with spaces")
			return
		}
	case strings.Contains(msg, "control characters") || strings.Contains(msg, "UTF-8") || strings.Contains(msg, "utf-8"):
		if p, r, ok := findBadChar(data); ok {
			what := fmt.Sprintf("control character %U", r)
			if r == utf8.RuneError {
				what = "a byte that is not valid UTF-8"
			}
			d.errorAt(state.Pos{File: d.file, Line: p.Line, Column: p.Column},
				`%s, which YAML does not allow: remove it, or write it as an escape such as "\x01" in a double-quoted string`, what)
			return
		}
	}
	if p, ok := findEnvRef(data, line); ok {
		// yaml.v3 reads the braces of an unquoted ${VAR} in a flow collection as a
		// mapping, and then reports a line near it: point at the reference instead.
		d.errorAt(state.Pos{File: d.file, Line: p.Line, Column: p.Column},
			`invalid YAML: %s; inside { } or [ ], quote a variable reference: "${VAR}"`, msg)
		return
	}
	d.errorAt(state.Pos{File: d.file, Line: line, Column: 1},
		"invalid YAML: %s; check the indentation, colons and quotes on this line and the one before", msg)
}

// findEnvRef returns the first "${" on the lines around line (1-based) that is
// preceded on its line by a "{" or "[", that is, probably inside a flow collection.
func findEnvRef(data []byte, line int) (state.Pos, bool) {
	n := 0
	for l := range bytes.Lines(data) {
		n++
		if n < line-1 {
			continue
		}
		if n > line+1 {
			break
		}
		if i := bytes.Index(l, []byte("${")); i >= 0 && bytes.ContainsAny(l[:i], "{[") {
			return state.Pos{Line: n, Column: utf8.RuneCount(l[:i]) + 1}, true
		}
	}
	return state.Pos{}, false
}

// findTab returns the first tab that is part of a line's indentation.
func findTab(data []byte) (state.Pos, bool) {
	line := 0
	for l := range bytes.Lines(data) {
		line++
		col := 1
		for _, c := range l {
			if c == '\t' {
				return state.Pos{Line: line, Column: col}, true
			}
			if c != ' ' && c != '-' {
				break
			}
			col++
		}
	}
	return state.Pos{}, false
}

// findBadChar returns the first character YAML does not allow in a file.
func findBadChar(data []byte) (state.Pos, rune, bool) {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if (r == utf8.RuneError && size <= 1) || (unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' && r != 0x85) || r == 0xFEFF && i > 0 {
			return state.Pos{Line: line, Column: col}, r, true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return state.Pos{}, 0, false
}
