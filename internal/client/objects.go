package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// FetchUser reads one user.
func (c *Client) FetchUser(ctx context.Context, id string) (state.User, error) {
	var u state.User
	if id == "" {
		return u, fmt.Errorf("%s: empty user id", OpUserFetch)
	}
	err := c.do(ctx, &request{op: OpUserFetch, kind: kindRead, url: c.endpoint("user", id, "fetch"),
		handle: func(resp *http.Response, _ *watchdog) error {
			u = state.User{}
			if err := readObject(OpUserFetch, resp, &u); err != nil {
				return err
			}
			if u.ID == "" {
				return malformed(OpUserFetch, "no id")
			}
			return nil
		}})
	return u, err
}

// FetchUserByAlias reads the user whose alias is alias, with `GET user/@ALIAS/fetch`:
// the only way to see an alias, which list and fetch never return. A fetch is not a
// poll (it does not count against the poll limit). No user with the alias is a 404
// (IsNotFound). The alias must be valid (state.ValidAlias), so it cannot change the path.
func (c *Client) FetchUserByAlias(ctx context.Context, alias string) (state.User, error) {
	if !state.ValidAlias(alias) {
		return state.User{}, fmt.Errorf("%s: invalid alias %q", OpUserFetch, alias)
	}
	return c.FetchUser(ctx, "@"+alias)
}

// CreateUser creates a user and returns its ID. It is not repeated once it may have
// reached the server: a lost answer is a *LostAnswerError, for the caller to resolve
// by looking the user up by email.
func (c *Client) CreateUser(ctx context.Context, f state.UserFields) (string, error) {
	body, err := f.WireJSON()
	if err != nil {
		return "", fmt.Errorf("%s: %w", OpUserCreate, err)
	}
	return c.create(ctx, OpUserCreate, body, "user", "create")
}

// UpdateUser changes the fields of f that are present. It is idempotent, so it is
// repeated when its answer is lost.
func (c *Client) UpdateUser(ctx context.Context, id string, f state.UserFields) error {
	if id == "" {
		return fmt.Errorf("%s: empty user id", OpUserUpdate)
	}
	body, err := f.WireJSON()
	if err != nil {
		return fmt.Errorf("%s: %w", OpUserUpdate, err)
	}
	return c.write(ctx, OpUserUpdate, body, "user", id, "update")
}

// DeleteUser deletes a user and everything it owns, its tokens included. A user that
// is already gone (404) counts as deleted.
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%s: empty user id", OpUserDelete)
	}
	return c.delete(ctx, OpUserDelete, "user", id, "delete")
}

// CreateToken creates a token for a user and returns it with its secret, which the
// API shows only this once. Like CreateUser it is never repeated blindly; the caller
// finds a token whose answer was lost by the nonce it put into its meta.
func (c *Client) CreateToken(ctx context.Context, userID string, f state.TokenFields) (state.CreatedToken, error) {
	var ct state.CreatedToken
	if userID == "" {
		return ct, fmt.Errorf("%s: empty user id", OpTokenCreate)
	}
	body, err := f.WireJSON()
	if err != nil {
		return ct, fmt.Errorf("%s: %w", OpTokenCreate, err)
	}
	err = c.do(ctx, &request{op: OpTokenCreate, kind: kindCreate, body: body,
		url: c.endpoint("user", userID, "token", "create"),
		handle: func(resp *http.Response, _ *watchdog) error {
			ct = state.CreatedToken{}
			var ans object
			if err := readObject(OpTokenCreate, resp, &ans); err != nil {
				return err
			}
			for _, m := range []struct {
				key string
				v   any
			}{{"id", &ct.ID}, {"token", &ct.Token}, {"createdAt", &ct.CreatedAt}} {
				if _, err := ans.member(OpTokenCreate, m.key, m.v); err != nil {
					return err
				}
			}
			if ct.ID == "" {
				return malformed(OpTokenCreate, "no id")
			}
			if ct.Token.Reveal() == "" {
				return malformed(OpTokenCreate, "no token")
			}
			return nil
		}})
	if err != nil {
		return state.CreatedToken{}, err
	}
	return ct, nil
}

// UpdateToken changes the fields of f that are present; repeated like UpdateUser.
func (c *Client) UpdateToken(ctx context.Context, userID, tokenID string, f state.TokenFields) error {
	if userID == "" || tokenID == "" {
		return fmt.Errorf("%s: empty user or token id", OpTokenUpdate)
	}
	body, err := f.WireJSON()
	if err != nil {
		return fmt.Errorf("%s: %w", OpTokenUpdate, err)
	}
	return c.write(ctx, OpTokenUpdate, body, "user", userID, "token", tokenID, "update")
}

// DeleteToken revokes a token; one already gone (404) counts as revoked.
func (c *Client) DeleteToken(ctx context.Context, userID, tokenID string) error {
	if userID == "" || tokenID == "" {
		return fmt.Errorf("%s: empty user or token id", OpTokenDelete)
	}
	return c.delete(ctx, OpTokenDelete, "user", userID, "token", tokenID, "delete")
}

func (c *Client) create(ctx context.Context, op string, body []byte, path ...string) (string, error) {
	var id string
	err := c.do(ctx, &request{op: op, kind: kindCreate, body: body, url: c.endpoint(path...),
		handle: func(resp *http.Response, _ *watchdog) error {
			id = ""
			var ans object
			if err := readObject(op, resp, &ans); err != nil {
				return err
			}
			if _, err := ans.member(op, "id", &id); err != nil {
				return err
			}
			if id == "" {
				return malformed(op, "no id")
			}
			return nil
		}})
	if err != nil {
		return "", err
	}
	return id, nil
}

// write sends an idempotent POST. Its answer ({id}) carries nothing new, but it must
// still be an object and not an error body.
func (c *Client) write(ctx context.Context, op string, body []byte, path ...string) error {
	return c.do(ctx, &request{op: op, kind: kindIdempotent, body: body, url: c.endpoint(path...),
		handle: func(resp *http.Response, _ *watchdog) error {
			var ans struct{}
			return readObject(op, resp, &ans)
		}})
}

func (c *Client) delete(ctx context.Context, op string, path ...string) error {
	err := c.write(ctx, op, []byte("{}"), path...)
	if IsNotFound(err) {
		// Already gone, possibly by an earlier attempt whose answer was lost.
		return nil
	}
	return err
}
