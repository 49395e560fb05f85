package plan

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// savedSeeds are real saved plans and damaged copies of them: the file `apply` reads
// is user input that may have been edited, truncated or mixed up with another file.
func savedSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	save := func(d state.Desired, a state.Actual, o Options) []byte {
		p, err := Compute(d, a, o)
		if err != nil {
			tb.Fatal(err)
		}
		var b bytes.Buffer
		if err := WriteSaved(&b, NewSaved(d, a, o, &p)); err != nil {
			tb.Fatal(err)
		}
		return b.Bytes()
	}
	small := save(state.Desired{Owner: "own", Users: []state.DesiredUser{{
		Email: state.Some("a@x.test"), Name: state.Some("A"), Description: state.Some("one\ntwo"),
		Meta: state.Some(state.Meta{"team": "t"}), ManageTokens: true, Tokens: []state.DesiredToken{{Name: "ci"}},
	}}}, state.Actual{}, DefaultOptions(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)))
	golden := save(goldenScenario())
	empty := save(state.Desired{Owner: "own"}, state.Actual{}, DefaultOptions(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)))
	g := string(golden)
	return [][]byte{
		small,
		golden,
		empty,
		save(unsafeScenario()),
		small[:len(small)/2],
		small[:len(small)-2],
		[]byte(strings.Replace(g, `"action": "user_update"`, `"action": "token_update"`, 1)),
		[]byte(strings.Replace(g, `"user_id": "u_bob",`, ``, 1)),
		[]byte(strings.Replace(g, `"owner":`, `"OWNER":`, 1)),
		[]byte(strings.Replace(g, `"limits": {`, `"limits": {"bogus": 1, `, 1)),
		[]byte(strings.Replace(g, `"before": `, `"before_unknown": true, "before": `, 1)),
		[]byte(`{"format_version":"3","kind":"cbk-sync-plan","options":{},"desired":{"owner":"o"},"remote":{},"plan":null}`),
		[]byte(`{"format_version":"3","kind":"cbk-sync-plan","options":{},"desired":{"owner":"o"},"remote":{},"plan":{"owner":"o","fingerprint":"f","users":[{"email":"e","changes":[{"action":"token_create","email":"e","reason":"","token_body":{}}]}]}}`),
	}
}

// FuzzReadSaved feeds arbitrary bytes to ReadSaved. It must never panic; a plan it
// accepts must survive WriteSaved and ReadSaved unchanged and render in every view.
// And any file that Check accepts applies exactly what the recomputed plan says:
// verified against its own remote objects read again (by fetch, without
// description), it gives back the saved changes, which are safe, and each shown
// field is exactly what its body changes.
func FuzzReadSaved(f *testing.F) {
	for _, s := range savedSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadSaved(bytes.NewReader(data))
		if err != nil {
			if s != nil {
				t.Fatalf("ReadSaved returned a plan with the error %v", err)
			}
			return
		}
		var w1 bytes.Buffer
		if err := WriteSaved(&w1, s); err != nil {
			t.Fatalf("WriteSaved of an accepted plan: %v", err)
		}
		s2, err := ReadSaved(bytes.NewReader(w1.Bytes()))
		if err != nil {
			t.Fatalf("ReadSaved(WriteSaved(p)): %v\n%s", err, w1.Bytes())
		}
		if !reflect.DeepEqual(normalized(s.Plan), normalized(s2.Plan)) {
			t.Fatalf("the plan changed through WriteSaved and ReadSaved:\nread:    %#v\nre-read: %#v", s.Plan, s2.Plan)
		}
		var w2 bytes.Buffer
		if err := WriteSaved(&w2, s2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w1.Bytes(), w2.Bytes()) {
			t.Fatalf("WriteSaved is not stable:\n%s\n---\n%s", w1.Bytes(), w2.Bytes())
		}
		p := s.Plan
		for _, color := range []bool{false, true} {
			if err := RenderText(io.Discard, p, TextOptions{Color: color}); err != nil {
				t.Fatalf("RenderText: %v", err)
			}
		}
		if err := RenderJSON(io.Discard, p); err != nil {
			t.Fatalf("RenderJSON: %v", err)
		}
		if err := RenderMarkdown(io.Discard, p); err != nil {
			t.Fatalf("RenderMarkdown: %v", err)
		}

		checked, err := s.Check()
		if err != nil {
			if !errors.Is(err, ErrEdited) && !errors.Is(err, ErrUnsafe) && !strings.Contains(err.Error(), "computing the saved plan again") {
				t.Fatalf("Check: an error of no known kind: %v", err)
			}
			return
		}
		if !checked.Safety.Safe {
			t.Fatalf("Check accepted an unsafe plan: %q", checked.Safety.Reasons)
		}
		fresh := Fresh{Tokens: s.Remote.Tokens}
		for _, u := range s.Remote.Users {
			u.Description = state.Opt[string]{}
			fresh.Users = append(fresh.Users, u)
		}
		applied, err := s.Verify(fresh)
		if s.Reads().Listing {
			// The fetched users alone are not the whole account; with the listing
			// given as the saved objects, creates must still verify.
			fresh = Fresh{Users: s.Remote.Users, Listed: true, Tokens: s.Remote.Tokens}
			applied, err = s.Verify(fresh)
			if err != nil && strings.Contains(err.Error(), "safety verdict") {
				return // the owned count of the saved objects is not the file's
			}
		}
		if err != nil {
			t.Fatalf("a checked plan does not verify against its own remote objects: %v", err)
		}
		for _, q := range []*Plan{checked, applied} {
			if !sameJSON(q.Users, s.Plan.Users) {
				t.Fatalf("what is applied differs from what the file shows")
			}
		}
		assertFieldsAreTheEffect(t, s.Remote, applied)
	})
}

// normalized returns a copy of p in which the empty lists that JSON leaves out
// (omitempty) are nil, so that "[]" read from a file equals the field left out.
func normalized(p *Plan) Plan {
	c := *p
	if len(c.Safety.Reasons) == 0 {
		c.Safety.Reasons = nil
	}
	c.Users = make([]UserPlan, len(p.Users))
	for i, u := range p.Users {
		u.Changes = append([]Change(nil), u.Changes...)
		for j := range u.Changes {
			if len(u.Changes[j].Fields) == 0 {
				u.Changes[j].Fields = nil
			}
		}
		c.Users[i] = u
	}
	return c
}
