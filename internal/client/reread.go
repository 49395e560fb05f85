package client

import (
	"context"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ReadObjects reads again the remote objects a saved plan depends on, and no more:
// each user of userIDs by fetch (which is not a poll; the answer has no description),
// or, with listAll, the whole user list instead; and the token lists of tokenUsers.
// Fetches and token lists run in parallel, up to MaxConns. A user that is gone (404)
// is left out, and so is the token list of a user that is gone.
func (c *Client) ReadObjects(ctx context.Context, userIDs, tokenUsers []string, listAll bool) (state.Actual, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.maxConns)
	var mu sync.Mutex
	out := state.Actual{Users: []state.User{}, Tokens: map[string][]state.Token{}}
	if listAll {
		g.Go(func() error {
			var users []state.User
			for u, err := range c.ListUsers(gctx, ListOptions{Order: "asc"}) {
				if err != nil {
					return err
				}
				users = append(users, u)
			}
			mu.Lock()
			defer mu.Unlock()
			out.Users = append(out.Users, users...)
			return nil
		})
	} else {
		for _, id := range userIDs {
			g.Go(func() error {
				u, err := c.FetchUser(gctx, id)
				if IsNotFound(err) {
					return nil
				}
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				out.Users = append(out.Users, u)
				return nil
			})
		}
	}
	for _, id := range tokenUsers {
		g.Go(func() error {
			ts, err := c.readTokens(gctx, id)
			if IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			out.Tokens[id] = ts
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return state.Actual{}, err
	}
	return out, nil
}
