package apply

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// FileSink writes secret records as JSON lines to a file opened with OpenSecretsFile,
// or to stdout.
type FileSink struct {
	mu     sync.Mutex
	w      io.Writer
	f      *os.File // nil when writing to the caller's stdout
	name   string
	closed bool
	// write writes to f; a test replaces it to inject a short write.
	write func([]byte) (int, error)
}

// OpenSecretsFile opens the --secrets-out destination. "-" writes to stdout. A path is
// created with mode 0600, or appended to if it exists; an existing file that others
// could read (mode looser than 0600) is refused, since it would expose every secret
// written to it.
func OpenSecretsFile(path string, stdout io.Writer) (*FileSink, error) {
	if path == "-" {
		if stdout == nil {
			return nil, errors.New("secrets: no stdout to write to")
		}
		return &FileSink{w: stdout, name: "stdout"}, nil
	}
	if path == "" {
		return nil, errors.New("secrets: empty file name")
	}
	// Read and write, for repair to read the last byte; O_NOFOLLOW: a symbolic link is
	// refused, not followed to wherever it points; O_NONBLOCK: a FIFO is opened without
	// waiting for a reader, then refused below.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR|noFollowNonBlock, 0o600)
	if err != nil {
		if isSymlinkRefused(err) {
			return nil, fmt.Errorf("secrets: %s is a symbolic link: name the file itself", path)
		}
		return nil, fmt.Errorf("secrets: %w", err)
	}
	// Check the opened file, not the name, so the file checked is the file written.
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("secrets: %s is not a regular file: name a file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		_ = f.Close()
		return nil, fmt.Errorf("secrets file %s has mode %04o, which lets others read it; run `chmod 600 %s` or choose another file", path, perm, path)
	}
	if err := CheckOwner(path, fi); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("secrets file %w", err)
	}
	s := &FileSink{w: f, f: f, name: path, write: f.Write}
	if err := s.repair(fi.Size()); err != nil {
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

// repair ends a last line that a failed write left without its newline, so that the
// next record starts on a line of its own (the piece stays, on its own line, as no
// reader can take it for a record).
func (s *FileSink) repair(size int64) error {
	if size == 0 {
		return nil
	}
	last := make([]byte, 1)
	if _, err := s.f.ReadAt(last, size-1); err != nil {
		return fmt.Errorf("secrets: checking the end of %s: %w", s.name, err)
	}
	if last[0] == '\n' {
		return nil
	}
	if _, err := s.f.Write([]byte("\n")); err != nil {
		return fmt.Errorf("secrets: ending the cut last line of %s: %w", s.name, err)
	}
	return s.sync()
}

// Deliver writes rec as one JSON line and syncs it to disk before returning.
func (s *FileSink) Deliver(rec SecretRecord) error {
	b, err := rec.Line()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("secrets: %s is closed", s.name)
	}
	if s.f == nil {
		// One Write per line, so that concurrent appenders never interleave within a line.
		if _, err := s.w.Write(b); err != nil {
			return fmt.Errorf("secrets: writing to %s: %w", s.name, err)
		}
		return s.sync()
	}
	before, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("secrets: %s: %w", s.name, err)
	}
	if _, err := s.write(b); err != nil {
		// A short write (a full disk) leaves part of a record: cut it off, so the
		// file ends with a whole line and the next record starts a line.
		if terr := s.f.Truncate(before.Size()); terr != nil {
			return fmt.Errorf("secrets: writing to %s: %w; and cutting the partial record off failed: %v (the next run ends that line)", s.name, err, terr)
		}
		return fmt.Errorf("secrets: writing to %s: %w", s.name, err)
	}
	if err := s.sync(); err != nil {
		return err
	}
	return s.stillThere()
}

// stillThere checks that the file written is still the one at its path: a file deleted
// or replaced meanwhile holds the record where no one will read it, so the delivery
// failed.
func (s *FileSink) stillThere() error {
	written, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("secrets: %s: %w", s.name, err)
	}
	at, err := os.Lstat(s.name)
	if err != nil || !os.SameFile(written, at) || linkCount(written) < 1 {
		return fmt.Errorf("secrets: %s was deleted or replaced while cbk-sync wrote to it: the secret is in no file at that path", s.name)
	}
	return nil
}

// Retract appends rec, marked revoked, so that a reader taking the last record of a
// token name knows the one before it is not live.
func (s *FileSink) Retract(rec SecretRecord) error {
	rec.Revoked = true
	return s.Deliver(rec)
}

func (s *FileSink) sync() error {
	if f, ok := s.w.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("secrets: flushing %s: %w", s.name, err)
		}
	}
	f, ok := s.w.(interface{ Sync() error })
	if !ok {
		return nil
	}
	err := f.Sync()
	// Stdout may be a pipe or a terminal, which cannot be synced: the write already
	// reached the reader.
	if err != nil && s.f == nil && (errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, os.ErrInvalid)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secrets: syncing %s: %w", s.name, err)
	}
	return nil
}

// Close closes the file (not stdout). Deliver fails after Close.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("secrets: closing %s: %w", s.name, err)
	}
	return nil
}
