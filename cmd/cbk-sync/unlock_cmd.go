package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/client"
	"github.com/cbk-sync/cbk-sync/internal/lease"
)

// UnlockCmd breaks the account lock of an owner, as terraform force-unlock does: for a
// lease whose holder is gone where cbk-sync cannot tell (another machine), or one that
// claims an expiry far ahead.
type UnlockCmd struct {
	Files []string `short:"f" name:"file" placeholder:"PATH" help:"Configuration file or directory whose owner's lock to break (or --owner)."`
	Owner string   `name:"owner" placeholder:"OWNER" help:"Owner scope whose lock to break, instead of -f."`
	APIFlags
	Yes bool `short:"y" help:"Break it without asking (required when there is no terminal)."`
}

// Validate wants exactly one of -f and --owner.
func (c *UnlockCmd) Validate() error {
	if (len(c.Files) > 0) == (c.Owner != "") {
		return errors.New("name the lock's owner with -f FILE (the configuration's owner) or --owner OWNER, one of them")
	}
	return nil
}

// Run shows the lease's holder and, once confirmed, deletes the lease user. The run
// that held it, if it still runs, finds its lease gone at its next renewal and sends
// no further write.
func (c *UnlockCmd) Run(ctx context.Context, env *Env) error {
	owner := c.Owner
	if owner == "" {
		d, err := (&ConfigFlags{Files: c.Files}).load(ctx, env)
		if err != nil {
			return err
		}
		owner = d.Owner
	}
	s, err := c.open(env, true)
	if err != nil {
		return err
	}
	defer s.close()
	api, clock, err := s.leaseClient()
	if err != nil {
		return err
	}
	u, found, err := lease.Find(ctx, api, owner)
	if err != nil {
		return fmt.Errorf("looking up the lock of owner %q: %w", owner, err)
	}
	if !found {
		fmt.Fprintf(env.IO.Out, "No lock is held on this account for owner %q.\n", owner)
		return nil
	}
	expires := lease.ExpiresAt(u).UTC().Format(time.RFC3339)
	state := "expires " + expires + " unless renewed"
	if now, ok := clock.Now(); ok && now.After(lease.ExpiresAt(u)) {
		state = "expired " + expires + " (the next run takes it over)"
	}
	fmt.Fprintf(env.IO.Out, "The lock of owner %q is held by %q (lease user %s), taken %s, last renewed %s; it %s.\n",
		owner, lease.Holder(u), u.ID, time.UnixMilli(u.CreatedAt).UTC().Format(time.RFC3339),
		time.UnixMilli(u.UpdatedAt).UTC().Format(time.RFC3339), state)
	if !c.Yes {
		if !env.IO.CanPrompt() {
			return fmt.Errorf("refusing to break the lock without confirmation: there is no terminal to ask on; make sure its holder is not running and pass --yes")
		}
		ok, err := env.IO.Confirm(ctx, "Break this lock? A run still holding it stops writing at its next renewal; make sure it is not running.")
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("unlock cancelled; the lock is still held")
		}
	}
	// By ID: a lease taken since (another ID) is not touched.
	if err := api.DeleteUser(ctx, u.ID); err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("breaking the lock: %w", err)
	}
	if err := s.save(); err != nil {
		return err
	}
	env.Log.Warn("lock broken", "owner", owner, "holder", lease.Holder(u))
	fmt.Fprintf(env.IO.Out, "The lock of owner %q is broken.\n", owner)
	return nil
}
