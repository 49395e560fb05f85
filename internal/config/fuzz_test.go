package config

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// FuzzLoad checks that no input makes Load panic, that every failure is a sorted
// Errors with positions and messages, and that a loaded config survives Export and
// Load again with the same users.
func FuzzLoad(f *testing.F) {
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte("version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: {x: &a [1, 2], y: *a}\n"))
	f.Add([]byte("version: 1\nowner: ${O:-acme}\nusers:\n  - email: ${E}@acme.test\n    name: $${x}\n"))
	f.Add([]byte("version: 1\nowner: acme\nusers: [{email: a@acme.test, tokens: [{name: x, rotateAfter: 1d2h}]}]\n"))
	f.Add([]byte(aliasBomb()))
	f.Add([]byte("a: 1\n\tb: 2\n---\n"))
	lookup := env("E", "eve", "N", "5")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := LoadBytes("fuzz.yaml", data, lookup)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			for _, e := range errs {
				if e.Msg == "" || e.Pos.File != "fuzz.yaml" {
					t.Fatalf("error without message or file: %#v", e)
				}
			}
			if !slices.IsSortedFunc(errs, func(a, b Error) int {
				if a.Pos.Line != b.Pos.Line {
					return a.Pos.Line - b.Pos.Line
				}
				return a.Pos.Column - b.Pos.Column
			}) {
				t.Fatalf("errors not sorted:\n%v", err)
			}
			return
		}
		var users []state.User
		var want []string
		var src []state.DesiredUser
		for _, u := range d.Users {
			e := u.Email.Value()
			if e == "" {
				continue // exported by id, which this check does not follow
			}
			users = append(users, state.User{ID: e, Email: state.Some(e), Name: u.Name, Description: u.Description,
				Image: u.Image, Meta: u.Meta, Limits: u.Limits})
			want = append(want, e)
			src = append(src, u)
		}
		out, err := Export(d.Owner, users, nil)
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		back, err := LoadBytes("export.yaml", out, nil)
		if err != nil {
			t.Fatalf("exported config does not load: %v\n%s", err, out)
		}
		var got []string
		for i, u := range back.Users {
			got = append(got, u.Email.Value())
			src := src[slices.Index(want, u.Email.Value())]
			if src.Name.IsSet() && back.Users[i].Name != src.Name ||
				src.Meta.IsSet() && !state.EqualJSON(src.Meta.Value(), back.Users[i].Meta.Value()) && len(src.Meta.Value()) > 0 {
				t.Fatalf("user %s changed in the round trip:\n%s", u.Email.Value(), out)
			}
		}
		slices.SortFunc(want, func(a, b string) int { return strings.Compare(state.EmailKey(a), state.EmailKey(b)) })
		if !slices.Equal(got, want) {
			t.Fatalf("users %v came back as %v", want, got)
		}
	})
}
