package plan

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// benchScenario is a scheduled reconciliation at scale: n declared users with two
// tokens each, all existing remotely; every 100th user has drifted and every 100th
// token is due for rotation, so the plan is small but every object is compared.
func benchScenario(n int) (state.Desired, state.Actual, Options) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	created := now.Add(-48 * time.Hour).UnixMilli()
	d := state.Desired{Owner: "acme", Users: make([]state.DesiredUser, 0, n)}
	a := state.Actual{Users: make([]state.User, 0, n), Tokens: make(map[string][]state.Token, n)}
	for i := range n {
		email := fmt.Sprintf("user%06d@acme.test", i)
		id := fmt.Sprintf("cm%020d", i)
		name := fmt.Sprintf("User %d", i)
		d.Users = append(d.Users, state.DesiredUser{
			Email: state.Some(email), Name: state.Some(name), Description: state.Some("sandbox"),
			Meta:         state.Some(state.Meta{"team": "sales", "region": "eu"}),
			Limits:       state.Some(state.Limits{"conversations": 1000.0}),
			ManageTokens: true,
			Tokens: []state.DesiredToken{
				{Name: "ci", Description: state.Some("CI"), Meta: state.Some(state.Meta{"purpose": "ci"}), RotateAfter: 720 * time.Hour},
				{Name: "ops"},
			},
		})
		remoteName := name
		if i%100 == 0 {
			remoteName = "old name"
		}
		a.Users = append(a.Users, state.User{ID: id, CreatedAt: created, UpdatedAt: created,
			Email: state.Some(email), Name: state.Some(remoteName), Description: state.Some("sandbox"),
			Image: state.Null[string](),
			Meta:  state.Some(state.Meta{state.OwnerKey: "acme", "team": "sales", "region": "eu", "x": 1.0}),
			Limits: state.Some(state.Limits{"tokens": 100.0, "conversations": 1000.0,
				"database": map[string]any{"files": 10.0}}),
		})
		tokCreated := created
		if i%100 == 1 {
			tokCreated = now.Add(-1000 * time.Hour).UnixMilli()
		}
		a.Tokens[id] = []state.Token{
			{ID: id + "-t1", CreatedAt: tokCreated, UpdatedAt: tokCreated, Name: state.Some("ci"), Description: state.Some("CI"),
				Meta: state.Some(state.Meta{state.OwnerKey: "acme", "purpose": "ci", state.NonceKey: "n"})},
			{ID: id + "-t2", CreatedAt: created, UpdatedAt: created, Name: state.Some("ops"), Description: state.Null[string](),
				Meta: state.Some(state.Meta{state.OwnerKey: "acme", state.NonceKey: "n"})},
		}
	}
	return d, a, DefaultOptions(now)
}

func BenchmarkCompute(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			d, a, o := benchScenario(n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p, err := Compute(d, a, o)
				if err != nil {
					b.Fatal(err)
				}
				if p.Summary().Total() != n/100*2 {
					b.Fatalf("unexpected plan size %d", p.Summary().Total())
				}
			}
		})
	}
}

// renderBenchPlan is a 10,000-user plan where every user changes (creates with two
// tokens), the worst case for the renderers.
func renderBenchPlan(b *testing.B) *Plan {
	d, _, o := benchScenario(10_000)
	p, err := Compute(d, state.Actual{}, o)
	if err != nil {
		b.Fatal(err)
	}
	return &p
}

func BenchmarkRenderText(b *testing.B) {
	p := renderBenchPlan(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := RenderText(io.Discard, p, TextOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderJSON(b *testing.B) {
	p := renderBenchPlan(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := RenderJSON(io.Discard, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderMarkdown(b *testing.B) {
	p := renderBenchPlan(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := RenderMarkdown(io.Discard, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint(b *testing.B) {
	_, a, _ := benchScenario(100_000)
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(a)
	}
}
