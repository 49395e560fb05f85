package plan

import (
	"encoding/json"
	"io"
)

// JSONFormatVersion is the format_version of the `-o json` view and of saved plans.
const JSONFormatVersion = "1"

// jsonPlan is the `-o json` view. Its field order is the documented key order, and
// every array is non-nil so that consumers never meet null where a list is expected.
type jsonPlan struct {
	FormatVersion string       `json:"format_version"`
	Owner         string       `json:"owner"`
	Summary       Summary      `json:"summary"`
	Actions       []jsonAction `json:"actions"`
	Orphans       []Orphan     `json:"orphans"`
	Warnings      []string     `json:"warnings"`
	Safe          bool         `json:"safe"`
	UnsafeReasons []string     `json:"unsafe_reasons"`
	Fingerprint   string       `json:"fingerprint"`
}

type jsonAction struct {
	Action    Action      `json:"action"`
	Email     string      `json:"email"`
	UserID    string      `json:"user_id"`
	TokenName string      `json:"token_name"`
	TokenID   string      `json:"token_id"`
	Reason    string      `json:"reason"`
	Fields    []jsonField `json:"fields"`
}

type jsonField struct {
	Field         string `json:"field"`
	Before        any    `json:"before"`
	After         any    `json:"after"`
	BeforeUnknown bool   `json:"before_unknown"`
}

// RenderJSON writes the machine view of p (`-o json`): the summary, every action in
// plan order with its field changes, orphans, warnings and the safety verdict.
func RenderJSON(w io.Writer, p *Plan) error {
	out := jsonPlan{
		FormatVersion: JSONFormatVersion,
		Owner:         p.Owner,
		Summary:       p.Summary(),
		Actions:       []jsonAction{},
		Orphans:       nonNil(p.Orphans),
		Warnings:      nonNil(p.Warnings),
		Safe:          p.Safety.Safe,
		UnsafeReasons: nonNil(p.Safety.Reasons),
		Fingerprint:   p.Fingerprint,
	}
	for _, u := range p.Users {
		for _, c := range u.Changes {
			a := jsonAction{Action: c.Action, Email: c.Email, UserID: c.UserID, TokenName: c.TokenName,
				TokenID: c.TokenID, Reason: c.Reason, Fields: make([]jsonField, len(c.Fields))}
			for i, f := range c.Fields {
				a.Fields[i] = jsonField{Field: f.Field, Before: f.Before, After: f.After, BeforeUnknown: f.BeforeUnknown}
			}
			out.Actions = append(out.Actions, a)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
