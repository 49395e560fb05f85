package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// benchOwner is the owner scope of every seeded and declared object.
const benchOwner = "bench"

// Token ages: every declared token has rotateAfter 30d; the tokens chosen for rotation
// were created long before that, the others recently.
const (
	rotateAfter = 30 * 24 * time.Hour
	oldAge      = 60 * 24 * time.Hour
	freshAge    = 24 * time.Hour
)

// pageSize is the API's largest page, which the client always asks for.
const pageSize = 100

// scenario is one benchmark setup: the remote state to seed, the configuration that
// declares it with a known drift, and what a correct plan of it contains.
type scenario struct {
	now    time.Time
	remote []remoteUser // seeded, in creation order
	yaml   []byte

	// The drift, as counts.
	updated, created, orphans, revoked, rotated int
	tokensPerUser                               int
	revokedOf                                   map[string]int // email -> tokens left undeclared

	// minReads are the fewest calls that read what the plan needs (see setListing).
	minReads map[string]int64
	// users is the number of remote users before the run.
	users int
	paged bool // users are listed in pages, not one stream
	// lockTTL is the TTL of a sync's account lock (0: lease.DefaultTTL), renewed every
	// lockTTL/3; -check shortens it so that a short run renews it too.
	lockTTL time.Duration
	// want is the plan summary the drift must produce.
	want plan.Summary
}

type remoteUser struct {
	email, name string
	createdAt   int64
	tokens      []remoteToken
}

type remoteToken struct {
	name      string
	createdAt int64
}

// setListing sets the minimum reads of the user listing (see userListReads).
func (sc *scenario) setListing(paged bool) {
	sc.paged = paged
	sc.minReads[opUserList], sc.minReads[opUserFetch] = sc.userListReads(sc.users)
	if sc.minReads[opUserFetch] == 0 {
		delete(sc.minReads, opUserFetch)
	}
}

// newScenario builds n remote users with k owned tokens each and a configuration
// that differs from them by: 10% of users with a changed name, 5% new users (declared,
// not remote, each with k tokens), 5% orphans (owned, not declared; pruned), and 10% of
// the tokens either undeclared (revoked) or older than rotateAfter (rotated), half each.
// Which users and tokens drift is drawn from seed.
func newScenario(n, k int, seed uint64, now time.Time) *scenario {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	sc := &scenario{now: now, tokensPerUser: k, revokedOf: map[string]int{}}
	sc.orphans = n * 5 / 100
	sc.updated = n * 10 / 100
	sc.created = n * 5 / 100
	tokenDrift := n * k * 10 / 100
	sc.revoked = tokenDrift / 2
	sc.rotated = tokenDrift - sc.revoked

	// kind of each remote user, by a seeded permutation.
	const (
		same = iota
		orphan
		updated
	)
	kind := make([]int, n)
	perm := rng.Perm(n)
	for i, u := range perm {
		switch {
		case i < sc.orphans:
			kind[u] = orphan
		case i < sc.orphans+sc.updated:
			kind[u] = updated
		}
	}

	// The tokens that drift are drawn among those of declared users (an orphan's tokens
	// go with it). 10% of all tokens is always fewer than the declared users' 95%.
	type tokenRef struct{ user, token int }
	var candidates []tokenRef
	for u := range n {
		if kind[u] != orphan {
			for t := range k {
				candidates = append(candidates, tokenRef{u, t})
			}
		}
	}
	rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	revoke := map[tokenRef]bool{}
	rotate := map[tokenRef]bool{}
	for i, ref := range candidates[:tokenDrift] {
		if i < sc.revoked {
			revoke[ref] = true
		} else {
			rotate[ref] = true
		}
	}

	// Creation times: users an hour apart in index order, so the list order is the
	// index order; tokens fresh, or old for those to rotate.
	base := now.Add(-oldAge - 24*time.Hour).UnixMilli()
	fresh := now.Add(-freshAge).UnixMilli()
	old := now.Add(-oldAge).UnixMilli()

	var y bytes.Buffer
	fmt.Fprintf(&y, "version: 1\nowner: %s\nprune:\n  users: true\nusers:\n", benchOwner)
	declare := func(email, name string, tokens []string) {
		fmt.Fprintf(&y, "  - email: %s\n    name: %s\n", email, name)
		if len(tokens) == 0 {
			y.WriteString("    tokens: []\n")
			return
		}
		y.WriteString("    tokens:\n")
		for _, t := range tokens {
			fmt.Fprintf(&y, "      - name: %s\n        rotateAfter: 30d\n", t)
		}
	}

	for u := range n {
		ru := remoteUser{email: userEmail(u), name: userName(u), createdAt: base + int64(u)}
		if kind[u] == updated {
			ru.name += " (old)"
		}
		var declared []string
		for t := range k {
			ref := tokenRef{u, t}
			rt := remoteToken{name: tokenName(t), createdAt: fresh}
			if rotate[ref] {
				rt.createdAt = old
			}
			ru.tokens = append(ru.tokens, rt)
			if revoke[ref] {
				sc.revokedOf[ru.email]++
			} else {
				declared = append(declared, rt.name)
			}
		}
		sc.remote = append(sc.remote, ru)
		if kind[u] != orphan {
			declare(userEmail(u), userName(u), declared)
		}
	}
	all := make([]string, k)
	for t := range k {
		all[t] = tokenName(t)
	}
	for u := n; u < n+sc.created; u++ {
		declare(userEmail(u), userName(u), all)
	}
	sc.yaml = y.Bytes()

	declaredRemote := int64(n - sc.orphans)
	sc.users = n
	sc.minReads = map[string]int64{opTokenList: declaredRemote * int64(k/pageSize+1)}
	sc.setListing(false) // the default: one stream
	sc.want = plan.Summary{
		UserCreate:  sc.created,
		UserUpdate:  sc.updated,
		UserDelete:  sc.orphans,
		TokenCreate: sc.created * k,
		TokenRevoke: sc.revoked,
		TokenRotate: sc.rotated,
	}
	return sc
}

func userEmail(i int) string { return fmt.Sprintf("user%06d@bench.test", i) }
func userName(i int) string  { return fmt.Sprintf("User %d", i) }
func tokenName(i int) string { return fmt.Sprintf("t%d", i) }

// seed stores the scenario's remote state in e, without API calls.
func (sc *scenario) seed(e *emulator.Emulator) error {
	owned := func() state.Opt[state.Meta] { return state.Some(state.Meta{state.OwnerKey: benchOwner}) }
	for _, ru := range sc.remote {
		u, err := e.PutUser(state.User{CreatedAt: ru.createdAt, Email: state.Some(ru.email),
			Name: state.Some(ru.name), Meta: owned()})
		if err != nil {
			return fmt.Errorf("seeding user %s: %w", ru.email, err)
		}
		for _, rt := range ru.tokens {
			if _, err := e.PutToken(u.ID, state.Token{CreatedAt: rt.createdAt, Name: state.Some(rt.name), Meta: owned()}); err != nil {
				return fmt.Errorf("seeding token %s of %s: %w", rt.name, ru.email, err)
			}
		}
	}
	return nil
}

// describe is the scenario in one line, for the report header.
func (sc *scenario) describe() string {
	return fmt.Sprintf("drift: %d users updated, %d new, %d orphans pruned; %d tokens revoked, %d rotated",
		sc.updated, sc.created, sc.orphans, sc.revoked, sc.rotated)
}

// userListReads are the calls that list n users. As one JSONL stream (the default):
// the stream, and one fetch of its last user, since a stream's end is not proof (a
// deleted cursor also ends it). Paged: the pages (a page shorter than 100 ends the
// listing) and, after a full last page, one fetch, since the empty page after it is
// also the answer for a deleted cursor.
func (sc *scenario) userListReads(n int) (lists, fetches int64) {
	if !sc.paged {
		if n > 0 {
			fetches = 1
		}
		return 1, fetches
	}
	lists = int64(n/pageSize + 1)
	if n > 0 && n%pageSize == 0 {
		fetches = 1
	}
	return lists, fetches
}
