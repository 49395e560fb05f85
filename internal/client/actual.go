package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ReadActual reads the remote state with the fewest calls the API allows: the user
// pages (ceil(users/100), none after a short page), plus one token list for each user
// that tokensFor selects (more only past 100 tokens). Token lists run in parallel,
// up to MaxConns, and start while user pages are still arriving; the next user page is
// asked for while the token lists of the current one run, so the pages, a chain of
// calls that cannot be parallel, are not also waiting for the token lists.
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
	var listErr error
	for u, err := range c.readAhead(gctx) {
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
		// Go blocks while MaxConns lists run; the pages read ahead wait in the
		// buffer meanwhile, at most one page's worth.
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

// readAhead lists every user (ascending, so that users created during the read come
// at the end, where the cursor still finds them) from its own goroutine, a page ahead
// of the consumer: the next page is asked for as soon as the current one fits in the
// buffer. The consumer must read until the sequence ends or yields an error; the
// error, if any, is the last item.
func (c *Client) readAhead(ctx context.Context) iter.Seq2[state.User, error] {
	type item struct {
		u   state.User
		err error
	}
	return func(yield func(state.User, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		feed := make(chan item, pageSize)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer close(feed)
			for u, err := range c.ListUsers(ctx, ListOptions{Order: "asc"}) {
				select {
				case feed <- item{u, err}:
				case <-stop:
					return
				}
			}
		}()
		defer func() {
			// A consumer that stops early needs no page still being read.
			cancel()
			close(stop)
			<-done
		}()
		for it := range feed {
			if !yield(it.u, it.err) {
				return
			}
		}
	}
}

// ReadWithAliases is ReadActual, then ReadAliases of the aliases that aliasesOf names
// among the users listed (none when it is nil or names none): the whole read of a plan,
// whose two choices the plan makes (plan.ToRead).
func (c *Client) ReadWithAliases(ctx context.Context, tokensFor func(state.User) bool, aliasesOf func([]state.User) []string) (state.Actual, error) {
	actual, err := c.ReadActual(ctx, tokensFor)
	if err != nil || aliasesOf == nil {
		return actual, err
	}
	if aliases := aliasesOf(actual.Users); len(aliases) > 0 {
		if actual.Aliases, err = c.ReadAliases(ctx, aliases); err != nil {
			return state.Actual{}, err
		}
	}
	return actual, nil
}

// ReadAliases looks up each alias with FetchUserByAlias, in parallel up to MaxConns,
// and returns the ID of the user each names, or "" for one that names no user (404):
// the answers state.Actual.Aliases holds. Any other failure is returned.
func (c *Client) ReadAliases(ctx context.Context, aliases []string) (map[string]string, error) {
	out := make(map[string]string, len(aliases))
	for _, a := range aliases {
		if !state.ValidAlias(a) {
			return nil, fmt.Errorf("%s: invalid alias %q", OpUserFetch, a)
		}
	}
	if len(aliases) == 0 {
		return out, nil
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.maxConns)
	for _, a := range aliases {
		g.Go(func() error {
			u, err := c.FetchUserByAlias(gctx, a)
			switch {
			case IsNotFound(err):
				u.ID = ""
			case err != nil:
				return fmt.Errorf("looking up alias %q: %w", a, err)
			}
			mu.Lock()
			out[a] = u.ID
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
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
