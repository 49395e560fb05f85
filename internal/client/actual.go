package client

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ReadActual reads the remote state with the fewest calls the API allows: the user
// pages (ceil(users/100), none after a short page), plus one token list for each user
// that tokensFor selects (more only past 100 tokens). Token lists run in parallel,
// up to MaxConns, and start while user pages are still arriving.
//
// The answer has a Tokens entry for each selected user, an empty list included, and
// none for the others. A selected user deleted between the two reads (its token list
// is 404) is left out, as if it had been listed a moment later.
func (c *Client) ReadActual(ctx context.Context, tokensFor func(state.User) bool) (state.Actual, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.maxConns)

	var (
		mu     sync.Mutex
		tokens = map[string][]state.Token{}
		gone   = map[string]bool{}
	)
	var users []state.User
	seen := map[string]bool{}
	// Ascending order puts users created during the read at the end, where the
	// cursor still finds them, instead of before it.
	var listErr error
	for u, err := range c.ListUsers(gctx, ListOptions{Order: "asc"}) {
		if err != nil {
			listErr = err
			break
		}
		if seen[u.ID] {
			continue
		}
		seen[u.ID] = true
		users = append(users, u)
		if tokensFor == nil || !tokensFor(u) {
			continue
		}
		id := u.ID
		// Go blocks while MaxConns lists run, which holds the user pages back too:
		// reading users faster than their tokens can be read gains nothing.
		g.Go(func() error {
			ts, err := c.readTokens(gctx, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case IsNotFound(err):
				gone[id] = true
			case err != nil:
				return err
			default:
				tokens[id] = ts
			}
			return nil
		})
	}
	if listErr != nil {
		// Stop the token lists, but report a failed one first: its failure cancels
		// gctx, which is then why the user list failed.
		cancel()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			return state.Actual{}, err
		}
		return state.Actual{}, listErr
	}
	if err := g.Wait(); err != nil {
		return state.Actual{}, err
	}
	if len(gone) > 0 {
		kept := users[:0]
		for _, u := range users {
			if !gone[u.ID] {
				kept = append(kept, u)
			}
		}
		users = kept
	}
	if users == nil {
		users = []state.User{}
	}
	return state.Actual{Users: users, Tokens: tokens}, nil
}

func (c *Client) readTokens(ctx context.Context, userID string) ([]state.Token, error) {
	ts := []state.Token{}
	seen := map[string]bool{}
	for t, err := range c.ListTokens(ctx, userID, ListOptions{Order: "asc"}) {
		if err != nil {
			return nil, err
		}
		if !seen[t.ID] {
			seen[t.ID] = true
			ts = append(ts, t)
		}
	}
	return ts, nil
}
