package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/config"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// ExportCmd writes the remote state as a valid configuration.
type ExportCmd struct {
	APIFlags
	Out    string `name:"out" type:"path" placeholder:"FILE" help:"Write the configuration to FILE instead of stdout."`
	Owner  string `required:"" help:"Owner scope of the configuration: users owned by it are exported."`
	Tokens bool   `help:"Also export the users' tokens (their names, descriptions and meta; never secrets)."`
	All    bool   `help:"Also export unmanaged users (no owner marker), to bootstrap a configuration; planning it adopts them."`
	Force  bool   `help:"Replace the file --out names if it exists (else that is refused)."`
	// OldOut is export's spelling before -o meant a format everywhere: -o FILE still
	// works, with a warning, unless FILE is a format's name (see Validate).
	OldOut string `name:"output" short:"o" hidden:""`
	// Omit leaves fields to the partner's app: a nightly sync of the file never reverts
	// what customers set there.
	Omit []string `name:"omit" sep:"," placeholder:"FIELD,..." help:"Leave these user fields out of the file, so that it does not manage them (what the partner's app or its customers set is never reverted): any of name, description, image, meta, limits."`
}

// omittable are the user fields export --omit can leave out.
var omittable = []string{"name", "description", "image", "meta", "limits"}

// formatNames are the words -o takes as a format in plan, sync and show: given to
// export's old -o, they are refused, never taken for a file name.
var formatNames = map[string]bool{"text": true, "json": true, "markdown": true, "md": true, "yaml": true, "yml": true}

// Validate checks the owner and the output file before anything is read.
func (c *ExportCmd) Validate() error {
	if !config.ValidOwner(c.Owner) {
		return fmt.Errorf("--owner %q: use 1 to 63 characters of a-z, 0-9 and -", c.Owner)
	}
	if c.OldOut != "" {
		name := filepath.Base(c.OldOut)
		if formatNames[strings.ToLower(name)] && name == c.OldOut {
			return fmt.Errorf("export -o %s: -o is a format in cbk-sync, and export writes YAML only; "+
				"to write the configuration to a file, use --out FILE (no file named %q was written)", c.OldOut, c.OldOut)
		}
		if c.Out != "" {
			return fmt.Errorf("export -o %s and --out %s: -o is the old spelling of --out; pass --out only", c.OldOut, c.Out)
		}
	}
	for _, f := range c.Omit {
		if !slices.Contains(omittable, f) {
			return fmt.Errorf("--omit %q: give user fields among %s, separated by commas", f, strings.Join(omittable, ", "))
		}
	}
	return nil
}

// omitFields leaves the fields of --omit out of u: absent, they are not exported, so
// the file does not manage them.
func (c *ExportCmd) omitFields(u *state.User) {
	for _, f := range c.Omit {
		switch f {
		case "name":
			u.Name = state.Opt[string]{}
		case "description":
			u.Description = state.Opt[string]{}
		case "image":
			u.Image = state.Opt[string]{}
		case "meta":
			u.Meta = state.Opt[state.Meta]{}
		case "limits":
			u.Limits = state.Opt[state.Limits]{}
		}
	}
}

// Run reads the users (and tokens) and writes them as YAML.
func (c *ExportCmd) Run(ctx context.Context, env *Env) error {
	outFlag := "--out"
	if c.OldOut != "" {
		env.Log.Warn("export -o FILE is deprecated: -o is a format in cbk-sync; use --out FILE", "file", c.OldOut)
		c.Out, outFlag = c.OldOut, "-o"
	}
	if err := prepareOutputs([]output{{flag: outFlag, path: c.Out, keep: !c.Force}, c.emulatorOutput()}, c.inputs("")); err != nil {
		return err
	}
	s, err := c.open(env, false)
	if err != nil {
		return err
	}
	defer s.close()
	include := func(u state.User) bool {
		if u.IsLease() {
			return false // another run's lock, never part of a configuration
		}
		switch u.Owner() {
		case c.Owner:
			return true
		case "":
			return c.All
		}
		return false
	}
	actual, err := s.reader.ReadActual(ctx, func(u state.User) bool { return c.Tokens && include(u) })
	if err != nil {
		return fmt.Errorf("reading the remote state: %w", err)
	}
	var users []state.User
	tokens := map[string][]state.Token{}
	for _, u := range actual.Users {
		if !include(u) {
			continue
		}
		c.omitFields(&u)
		users = append(users, u)
		if c.Tokens {
			for _, t := range actual.Tokens[u.ID] {
				if o := t.Owner(); o == c.Owner || (o == "" && c.All) {
					tokens[u.ID] = append(tokens[u.ID], t)
				}
			}
			if tokens[u.ID] == nil {
				tokens[u.ID] = []state.Token{}
			}
		}
	}
	if !c.Tokens {
		tokens = nil
	}
	out, err := config.Export(c.Owner, users, tokens)
	if err != nil {
		return err
	}
	if len(c.Omit) > 0 {
		out = append([]byte("# Left unmanaged (export --omit): "+strings.Join(c.Omit, ", ")+". These fields are not in the file,\n# so no sync changes them; declare one on a user to manage it there.\n"), out...)
	}
	if c.Out != "" {
		if err := atomicfile.Write(c.Out, out, 0o644); err != nil {
			return fmt.Errorf("%s: %w", outFlag, err)
		}
		env.Log.Info("exported", "users", len(users), "file", c.Out)
		return nil
	}
	_, err = env.IO.Out.Write(out)
	return err
}
