package apply

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// SecretSink receives the secret of every token apply creates. Deliver must not return
// until the record is durable (written and flushed or synced): apply revokes the old
// token of a rotation, and reports the create as done, only after Deliver returned nil.
// Deliver may be called from several goroutines at once.
type SecretSink interface {
	Deliver(SecretRecord) error
}

// SecretRecord is one created token and its secret. Token redacts itself everywhere
// (fmt, JSON, slog); a sink that must write the value calls Token.Reveal().
type SecretRecord struct {
	Email     string       `json:"email"`
	UserID    string       `json:"user_id"`
	TokenName string       `json:"token_name"`
	TokenID   string       `json:"token_id"`
	Token     state.Secret `json:"token"`
	CreatedAt time.Time    `json:"created_at"`
}

// FileSink writes secret records as JSON lines to a file opened with OpenSecretsFile,
// or to stdout.
type FileSink struct {
	mu     sync.Mutex
	w      io.Writer
	f      *os.File // nil when writing to the caller's stdout
	name   string
	closed bool
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
	// O_NOFOLLOW: a symbolic link is refused, not followed to wherever it points;
	// O_NONBLOCK: a FIFO is opened without waiting for a reader, then refused below.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY|noFollowNonBlock, 0o600)
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
	return &FileSink{w: f, f: f, name: path}, nil
}

// secretLine is the JSON-lines shape of docs/secrets.md, with the secret revealed.
type secretLine struct {
	Email     string    `json:"email"`
	UserID    string    `json:"user_id"`
	TokenName string    `json:"token_name"`
	TokenID   string    `json:"token_id"`
	Token     string    `json:"token"`
	CreatedAt time.Time `json:"created_at"`
}

// Line is rec as one JSON line (with its newline), the secret revealed: what every sink
// delivers, so a consumer reads the same record from a file, an age file or stdin.
func (rec SecretRecord) Line() ([]byte, error) {
	b, err := json.Marshal(secretLine{rec.Email, rec.UserID, rec.TokenName, rec.TokenID, rec.Token.Reveal(), rec.CreatedAt.UTC()})
	if err != nil {
		return nil, fmt.Errorf("secrets: encoding the record of token %s: %w", rec.TokenID, err)
	}
	return append(b, '\n'), nil
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
	// One Write per line, so that concurrent appenders never interleave within a line.
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("secrets: writing to %s: %w", s.name, err)
	}
	return s.sync()
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
