package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/apply"
)

// output is one file a command writes, named by the flag that names it. A path of
// "-" is stdout.
type output struct {
	flag string
	path string
	// secrets marks the secrets sink: an existing file must have mode 0600.
	secrets bool
	// keep refuses to replace an existing file (export without --force).
	keep bool
}

// input is a file a command reads, which no output may name.
type input struct {
	flag string
	path string
}

// prepareOutputs checks every destination of a run before the first API call and
// before any prompt, so that a bad destination costs nothing: each must be absent or
// a regular file (a symbolic link, FIFO, device or directory is refused: writing
// would follow the link, block, or replace the node); no two may be the same file,
// nor may one be an input; an existing secrets file must be 0600. Then the missing
// parent directories of all of them are created alike.
func prepareOutputs(outs []output, ins []input) error {
	type checked struct {
		output
		key string
		fi  fs.FileInfo
	}
	var done []checked
	stdout := ""
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		if o.path == "-" {
			if stdout != "" {
				return fmt.Errorf("%s - and %s - both write to stdout; send one of them to a file", stdout, o.flag)
			}
			stdout = o.flag
			continue
		}
		fi, err := checkDestination(o)
		if err != nil {
			return err
		}
		key := pathKey(o.path)
		for _, d := range done {
			if d.key == key || (fi != nil && d.fi != nil && os.SameFile(fi, d.fi)) {
				return fmt.Errorf("%s %s and %s %s are the same file: one would overwrite the other; choose two files", d.flag, d.path, o.flag, o.path)
			}
		}
		for _, in := range ins {
			if sameAsInput(in.path, key, fi) {
				return fmt.Errorf("%s %s is also read as %s: writing it would destroy the input; choose another file", o.flag, o.path, in.flag)
			}
		}
		if o.keep && fi != nil {
			return fmt.Errorf("%s %s exists: pass --force to replace it, or choose another file", o.flag, o.path)
		}
		if o.secrets && fi != nil {
			if perm := fi.Mode().Perm(); perm&0o077 != 0 {
				return fmt.Errorf("%s %s has mode %04o, which lets others read it; run `chmod 600 %s` or choose another file; nothing was changed", o.flag, o.path, perm, o.path)
			}
			if err := apply.CheckOwner(o.path, fi); err != nil {
				return fmt.Errorf("%s %w; nothing was changed", o.flag, err)
			}
		}
		done = append(done, checked{output: o, key: key, fi: fi})
	}
	for _, d := range done {
		if err := os.MkdirAll(filepath.Dir(d.path), 0o755); err != nil {
			return fmt.Errorf("%s %s: cannot create its directory: %w", d.flag, d.path, unwrapPath(err))
		}
	}
	return nil
}

// checkDestination returns the existing file o names (nil when absent), or why it
// cannot be written.
func checkDestination(o output) (fs.FileInfo, error) {
	fi, err := os.Lstat(o.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%s %s: %w", o.flag, o.path, unwrapPath(err))
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(o.path)
		return nil, fmt.Errorf("%s %s is a symbolic link (to %s): name the file itself, so that the file checked is the file written", o.flag, o.path, target)
	case fi.IsDir():
		return nil, fmt.Errorf("%s %s is a directory: name a file in it", o.flag, o.path)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s %s is a %s, not a regular file: cbk-sync writes only regular files (a device would be replaced, a FIFO could block the run); name a file", o.flag, o.path, fileKind(fi.Mode()))
	}
	return fi, nil
}

// sameAsInput reports whether the output with key and file info fi is the input path
// or, when path is a directory, one of the configuration files in it.
func sameAsInput(path, key string, fi fs.FileInfo) bool {
	if path == "" || path == "-" {
		return false
	}
	ifi, err := os.Stat(path)
	if err != nil {
		return pathKey(path) == key
	}
	if !ifi.IsDir() {
		return pathKey(path) == key || (fi != nil && os.SameFile(fi, ifi))
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return false
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			continue
		}
		p := filepath.Join(path, name)
		if pathKey(p) == key {
			return true
		}
		if efi, err := os.Stat(p); err == nil && fi != nil && os.SameFile(fi, efi) {
			return true
		}
	}
	return false
}

// pathKey is path made absolute with its directory's symbolic links resolved, so
// that two names of one file that does not exist yet compare equal.
func pathKey(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	dir, base := filepath.Split(abs)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(real, base)
	}
	return abs
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// unwrapPath drops the *fs.PathError wrapper whose path the caller already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
