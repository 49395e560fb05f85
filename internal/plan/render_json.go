package plan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// JSONFormatVersion is the format_version of the `-o json` view. Version 2 added the
// identity of each action's and orphan's user.
const JSONFormatVersion = "2"

// jsonAction is one action of the `-o json` view; the view's top-level keys are
// written in their documented order by RenderJSON, and every array is non-nil so that
// consumers never meet null where a list is expected.
type jsonAction struct {
	Action    Action         `json:"action"`
	Identity  state.Identity `json:"identity"`
	Email     string         `json:"email"`
	UserID    string         `json:"user_id"`
	TokenName string         `json:"token_name"`
	TokenID   string         `json:"token_id"`
	Reason    string         `json:"reason"`
	Fields    []jsonField    `json:"fields"`
}

type jsonField struct {
	Field         string `json:"field"`
	Before        any    `json:"before"`
	After         any    `json:"after"`
	BeforeUnknown bool   `json:"before_unknown"`
}

// RenderJSON writes the machine view of p (`-o json`): the summary, every action in
// plan order with its field changes, orphans, warnings and the safety verdict.
//
// The document is written one action at a time, with the same bytes as encoding it
// whole with two-space indentation would give: a plan of 10,000 users would otherwise
// be built, and then indented, as two copies in memory.
func RenderJSON(w io.Writer, p *Plan) error {
	jw := jsonWriter{w: bufio.NewWriter(w)}
	jw.enc = json.NewEncoder(&jw.buf)
	jw.enc.SetEscapeHTML(false)
	jw.raw("{\n")
	jw.field("format_version", JSONFormatVersion, false)
	jw.field("owner", p.Owner, false)
	jw.field("summary", p.Summary(), false)
	jw.raw(`  "actions": `)
	n := 0
	for _, u := range p.Users {
		for _, c := range u.Changes {
			if n == 0 {
				jw.raw("[\n    ")
			} else {
				jw.raw(",\n    ")
			}
			n++
			a := jsonAction{Action: c.Action, Identity: u.Identity, Email: c.Email, UserID: c.UserID, TokenName: c.TokenName,
				TokenID: c.TokenID, Reason: c.Reason, Fields: make([]jsonField, len(c.Fields))}
			for i, f := range c.Fields {
				a.Fields[i] = jsonField(f)
			}
			jw.value(a, "    ")
		}
	}
	if n == 0 {
		jw.raw("[],\n")
	} else {
		jw.raw("\n  ],\n")
	}
	jw.field("orphans", nonNil(p.Orphans), false)
	jw.field("warnings", nonNil(p.Warnings), false)
	jw.field("safe", p.Safety.Safe, false)
	jw.field("unsafe_reasons", nonNil(p.Safety.Reasons), false)
	if p.Account != nil {
		jw.field("account", p.Account, false)
	}
	if p.ReadCost != nil {
		jw.field("reads", p.ReadCost, false)
	}
	if p.SecretsTo != nil { // only sync and apply know it
		jw.field("secrets_to", p.SecretsTo, false)
	}
	if p.TokensUnchecked > 0 { // only plan --base leaves some unchecked
		jw.field("tokens_unchecked", p.TokensUnchecked, false)
		jw.field("tokens_unchecked_note", p.UncheckedLine(), false)
	}
	jw.field("fingerprint", p.Fingerprint, true)
	jw.raw("}\n")
	if jw.err != nil {
		return jw.err
	}
	return jw.w.Flush()
}

// jsonWriter writes an indented JSON document piece by piece, keeping the first error.
type jsonWriter struct {
	w   *bufio.Writer
	buf bytes.Buffer
	enc *json.Encoder
	err error
}

func (j *jsonWriter) raw(s string) {
	if j.err == nil {
		_, j.err = j.w.WriteString(s)
	}
}

// value writes v indented as if nested at prefix, without a trailing newline.
func (j *jsonWriter) value(v any, prefix string) {
	if j.err != nil {
		return
	}
	j.buf.Reset()
	j.enc.SetIndent(prefix, "  ")
	if j.err = j.enc.Encode(v); j.err == nil {
		_, j.err = j.w.Write(bytes.TrimSuffix(j.buf.Bytes(), []byte("\n")))
	}
}

// field writes one top-level member.
func (j *jsonWriter) field(key string, v any, last bool) {
	j.raw("  \"" + key + "\": ")
	j.value(v, "  ")
	if last {
		j.raw("\n")
	} else {
		j.raw(",\n")
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
