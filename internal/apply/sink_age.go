package apply

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"filippo.io/age"
	"filippo.io/age/agessh"

	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// AgeSink writes each secret to its own age-encrypted file, DIR/<email>/<token-name>.age,
// holding the record as one JSON line, so that the directory can be committed and
// decrypted with the age tool (`age -d -i KEY FILE`) or a SOPS/age workflow. The record
// is encrypted in memory: no cleartext is ever written on this path. A second delivery
// for the same name (a rotation, or a token created again) replaces that file, and the
// file it replaces is kept as <token-name>~previous.age, so a secret whose successor
// did not stick is never lost. Every write is atomic and durable before Deliver returns:
// a temporary file in the same directory, fsynced, renamed into place, and the directory
// fsynced (atomicfile).
type AgeSink struct {
	dir        string
	recipients []age.Recipient
	mu         sync.Mutex // serialises the renames, so a replaced file is kept once
	// replaced records, per file written in this run, whether it replaced one (kept
	// as its previous version), for Retract.
	replaced map[string]bool
}

// ParseAgeRecipients reads recipients the way the age tool's -r and -R take them: one per
// line, X25519 (age1...), post-quantum hybrid (age1pq1...) or SSH (ssh-ed25519, ssh-rsa)
// public keys, with empty lines and # comments ignored. source names where the text
// came from (a flag or a file) for errors, which give the line. Plugin recipients
// (age1yubikey1... and others) are refused: they would run an outside program.
func ParseAgeRecipients(text, source string) ([]age.Recipient, error) {
	var out []age.Recipient
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := parseAgeRecipient(line)
		if err != nil {
			where := source
			if strings.Contains(text, "\n") {
				where = fmt.Sprintf("%s:%d", source, n)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return out, nil
}

func parseAgeRecipient(s string) (age.Recipient, error) {
	short := s
	if len(short) > 24 {
		short = short[:24] + "..."
	}
	switch {
	case strings.HasPrefix(s, "ssh-"):
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a usable SSH public key (ssh-ed25519 or ssh-rsa): %v", short, err)
		}
		return r, nil
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a valid age post-quantum recipient: %v", short, err)
		}
		return r, nil
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err == nil {
			return r, nil
		}
		if plugin := agePluginName(s); plugin != "" {
			return nil, fmt.Errorf("%q is a recipient of the age plugin %q, which cbk-sync does not run; use an X25519 (age1...) or SSH recipient", short, plugin)
		}
		return nil, fmt.Errorf("%q is not a valid age recipient: %v", short, err)
	}
	return nil, fmt.Errorf("%q is not an age recipient: give an age public key (age1..., as age-keygen -y prints) or an SSH public key (ssh-ed25519 ...)", short)
}

// agePluginName returns NAME for a plugin recipient age1NAME1..., or "".
func agePluginName(s string) string {
	rest := strings.TrimPrefix(s, "age1")
	i := strings.IndexByte(rest, '1')
	if i <= 0 {
		return ""
	}
	for _, c := range rest[:i] {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return ""
		}
	}
	return rest[:i]
}

// OpenAgeDir prepares dir (creating it, mode 0700, if needed) and checks that files can
// be created in it, so that an unusable destination is refused before any change.
func OpenAgeDir(dir string, recipients []age.Recipient) (*AgeSink, error) {
	if dir == "" {
		return nil, errors.New("age: no directory given (write age:DIR)")
	}
	if len(recipients) == 0 {
		return nil, errors.New("age: no recipient: give --age-recipient or --age-recipients-file, or the secrets could be read by nobody")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("age: %s is not a directory", dir)
	}
	if err := CheckOwner(dir, fi); err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	probe, err := os.CreateTemp(dir, ".cbk-sync-probe-*")
	if err != nil {
		return nil, fmt.Errorf("age: cannot write in %s: %w", dir, err)
	}
	name := probe.Name()
	_ = probe.Close()
	if err := os.Remove(name); err != nil {
		return nil, fmt.Errorf("age: cannot write in %s: %w", dir, err)
	}
	// Encrypting once proves every recipient can be used.
	if w, err := age.Encrypt(io.Discard, recipients...); err != nil {
		return nil, fmt.Errorf("age: %w", err)
	} else if err := w.Close(); err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	return &AgeSink{dir: dir, recipients: recipients}, nil
}

// Dir is the sink's directory.
func (s *AgeSink) Dir() string { return s.dir }

// Recipients is how many recipients every file is encrypted to.
func (s *AgeSink) Recipients() int { return len(s.recipients) }

// Path is the file that holds the newest secret of rec's user and token name: in a
// directory named for the user's email, or its ID when it has none (a sub-account
// may have no email).
func (s *AgeSink) Path(rec SecretRecord) string {
	user := state.EmailKey(rec.Email)
	if user == "" {
		user = rec.UserID
	}
	return filepath.Join(s.dir, pathComponent(user), pathComponent(rec.TokenName)+".age")
}

// previousPath is where the file a delivery replaces is kept. "~" never occurs in a
// component (pathComponent escapes it), so this cannot be another token's file.
func previousPath(path string) string {
	return strings.TrimSuffix(path, ".age") + "~previous.age"
}

// Deliver encrypts rec to every recipient and writes it durably to Path(rec).
func (s *AgeSink) Deliver(rec SecretRecord) error {
	line, err := rec.Line()
	if err != nil {
		return err
	}
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, s.recipients...)
	if err != nil {
		return fmt.Errorf("age: %w", err)
	}
	if _, err := w.Write(line); err != nil {
		return fmt.Errorf("age: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("age: %w", err)
	}
	path := s.Path(rec)
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("age: %w", err)
		}
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return fmt.Errorf("age: syncing %s: %w", s.dir, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	had, err := keepPrevious(path)
	if err != nil {
		return err
	}
	if s.replaced == nil {
		s.replaced = map[string]bool{}
	}
	s.replaced[path] = had
	// The temporary file, its sync, the rename and the directory sync (which also
	// makes keepPrevious's rename durable) are atomicfile's.
	if err := atomicfile.Write(path, ct.Bytes(), 0o600); err != nil {
		return fmt.Errorf("age: writing %s: %w", path, err)
	}
	return nil
}

// keepPrevious keeps the file at path, if there is one, as its previous version, and
// says whether there was one. A hard link keeps path in place meanwhile, so a reader
// always finds a secret there; where links are not supported, the file is renamed.
func keepPrevious(path string) (bool, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	prev := previousPath(path)
	staged := filepath.Join(filepath.Dir(path), ".prev-"+filepath.Base(path))
	_ = os.Remove(staged)
	if err := os.Link(path, staged); err == nil {
		if err := os.Rename(staged, prev); err != nil {
			return true, fmt.Errorf("age: keeping the previous %s: %w", path, err)
		}
		return true, nil
	}
	if err := os.Rename(path, prev); err != nil {
		return true, fmt.Errorf("age: keeping the previous %s: %w", path, err)
	}
	return true, nil
}

// Retract undoes the delivery of rec, whose token was revoked: the file it replaced
// is put back (its secret is the one still live, a rotation having kept the old
// token), or, when it replaced none, the file is removed; the directory is synced.
func (s *AgeSink) Retract(rec SecretRecord) error {
	path := s.Path(rec)
	s.mu.Lock()
	defer s.mu.Unlock()
	had, ok := s.replaced[path]
	if !ok {
		return fmt.Errorf("age: %s was not written in this run", path)
	}
	delete(s.replaced, path)
	if had {
		if err := os.Rename(previousPath(path), path); err != nil {
			return fmt.Errorf("age: restoring the previous %s: %w", path, err)
		}
	} else if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("age: removing %s: %w", path, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("age: syncing %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// maxComponent bounds a path component well below the 255 bytes file systems allow.
const maxComponent = 200

// pathComponent makes s a safe, reversible file name: letters, digits and . _ @ + -
// stay; every other byte (a slash, a space, %, ~, control and non-ASCII characters) is
// written %XX; a leading dot is escaped, so "." and ".." and hidden names cannot occur.
// A name that would be too long is cut and given a hash of the whole, so it stays unique.
func pathComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		safe := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._@+-", c) >= 0
		if !safe || (i == 0 && c == '.') {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	out := b.String()
	if out == "" {
		return "%00"
	}
	if len(out) > maxComponent {
		sum := sha256.Sum256([]byte(s))
		out = out[:maxComponent-17] + "~" + hex.EncodeToString(sum[:8])
	}
	return out
}
