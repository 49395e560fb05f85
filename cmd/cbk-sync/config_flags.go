package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ConfigFlags name the configuration files.
type ConfigFlags struct {
	Files []string `short:"f" name:"file" required:"" placeholder:"PATH" help:"Configuration file or directory (its *.yaml/*.yml); repeatable; - reads it from stdin."`
}

func (f *ConfigFlags) load(ctx context.Context, env *Env) (state.Desired, error) {
	if !slices.Contains(f.Files, "-") {
		return loadInterruptible(ctx, "the configuration", func() (state.Desired, error) {
			return config.LoadEnv(f.Files, env.configEnv())
		})
	}
	// -f - reads one configuration from stdin (a pipe, a generator); merging it with
	// files would make positions ambiguous, so it comes alone.
	if len(f.Files) > 1 {
		return state.Desired{}, errors.New("-f - reads the whole configuration from stdin: give no other -f with it")
	}
	return loadInterruptible(ctx, "the configuration from stdin (-f -)", func() (state.Desired, error) {
		data, err := io.ReadAll(io.LimitReader(env.IO.In, config.MaxFileSize+1))
		if err != nil {
			return state.Desired{}, fmt.Errorf("-f -: reading stdin: %w", err)
		}
		return config.LoadBytesEnv("<stdin>", data, env.configEnv())
	})
}

// loadInterruptible runs load, which may block for good (a pipe that never ends, a
// FIFO nobody writes to), and returns early when ctx ends: an interrupt while reading
// the configuration ends the run at once. The blocked read is left behind; the process
// exits soon after.
func loadInterruptible(ctx context.Context, what string, load func() (state.Desired, error)) (state.Desired, error) {
	type loaded struct {
		d   state.Desired
		err error
	}
	ch := make(chan loaded, 1)
	go func() {
		d, err := load()
		ch <- loaded{d, err}
	}()
	select {
	case l := <-ch:
		return l.d, l.err
	case <-ctx.Done():
		return state.Desired{}, fmt.Errorf("interrupted while reading %s; nothing was read or changed remotely", what)
	}
}
