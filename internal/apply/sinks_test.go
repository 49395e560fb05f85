package apply_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// realRecord has a secret of the real shape, so the redaction of secret-shaped text is
// exercised too.
func realRecord(email, name, id string) apply.SecretRecord {
	return apply.SecretRecord{Email: email, UserID: "u1", TokenName: name, TokenID: id,
		Token:     state.Secret("sk-" + strings.Repeat(fmt.Sprintf("%x", len(id)%16), 60) + "beef"),
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// lockedBuffer is a log destination several deliveries may write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestExecSinkHandsTheRecordOnStdinOnly(t *testing.T) {
	dir := t.TempDir()
	var logs lockedBuffer
	sink, err := apply.NewExecSink(`sh -c 'cat > "$0/$CBK_SYNC_TOKEN_ID.json"; printf "%s\n" "$@" > "$0/$CBK_SYNC_TOKEN_ID.argv"; env > "$0/$CBK_SYNC_TOKEN_ID.env"' `+dir+` "${CBK_SYNC_EMAIL}" "$CBK_SYNC_TOKEN_NAME"`, apply.ExecOptions{
		Env:     append(os.Environ(), "CHATBOTKIT_API_TOKEN=sk-api-token-must-not-pass", "CBK_SYNC_EMAIL=stale"),
		DropEnv: []string{"CHATBOTKIT_API_TOKEN"},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	rec := realRecord("a b@x.test", "de ploy", "t1")
	require.NoError(t, sink.Deliver(rec))

	b, err := os.ReadFile(filepath.Join(dir, "t1.json"))
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, rec.Token.Reveal(), got["token"])
	assert.Equal(t, "de ploy", got["token_name"])

	argv, err := os.ReadFile(filepath.Join(dir, "t1.argv"))
	require.NoError(t, err)
	assert.Equal(t, "a b@x.test\nde ploy\n", string(argv), "quoted variables stay one word each")
	env, err := os.ReadFile(filepath.Join(dir, "t1.env"))
	require.NoError(t, err)
	assert.NotContains(t, string(env), rec.Token.Reveal(), "the secret is never in the environment")
	assert.NotContains(t, string(env), "sk-api-token-must-not-pass", "the API token is not passed on")
	assert.Contains(t, string(env), "CBK_SYNC_EMAIL=a b@x.test\n")
	assert.NotContains(t, string(env), "CBK_SYNC_EMAIL=stale")
	assert.Contains(t, string(env), "CBK_SYNC_TOKEN_ID=t1\n")
}

func TestExecSinkFailuresAndRedactedOutput(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rec := realRecord("a@x.test", "ci", "t2")
	secret := rec.Token.Reveal()
	b64 := base64.StdEncoding.EncodeToString([]byte("x" + secret)) // the secret at an odd offset

	echo, err := apply.NewExecSink(`sh -c 'cat; echo "data: `+b64+`"; cat >&2 </dev/null; exit 4'`, apply.ExecOptions{Logger: log})
	require.NoError(t, err)
	err = echo.Deliver(rec)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ended with exit status 4")
	all := logs.String() + err.Error()
	assert.NotContains(t, all, secret)
	assert.NotContains(t, all, secret[3:20])
	for shift := range 3 {
		chunk := secret[shift:]
		chunk = chunk[:len(chunk)/3*3]
		assert.NotContains(t, all, base64.StdEncoding.EncodeToString([]byte(chunk))[4:40], "base64 of the secret at shift %d", shift)
	}
	assert.Contains(t, all, "[REDACTED]")
	assert.Contains(t, all, `stream=stdout`)

	slow, err := apply.NewExecSink(`sleep 30`, apply.ExecOptions{Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	err = slow.Deliver(rec)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "timed out after 50ms")
	assert.Less(t, time.Since(start), 20*time.Second, "the command was killed")

	_, err = apply.NewExecSink(`no-such-command-cbk-sync --x`, apply.ExecOptions{})
	assert.ErrorContains(t, err, `the command "no-such-command-cbk-sync" cannot be run`)
	_, err = apply.NewExecSink(`vault kv put secret/$CHATBOTKIT_API_TOKEN -`, apply.ExecOptions{})
	assert.ErrorContains(t, err, "uses $CHATBOTKIT_API_TOKEN")
	_, err = apply.NewExecSink(`echo $(id)`, apply.ExecOptions{})
	assert.Error(t, err)
	_, err = apply.NewExecSink(`  `, apply.ExecOptions{})
	assert.ErrorContains(t, err, "empty")
	_, err = apply.NewExecSink(`sh -c 'unterminated`, apply.ExecOptions{})
	assert.ErrorContains(t, err, "cannot split")
}

func ageKey(t *testing.T) (*age.X25519Identity, string) {
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	return id, id.Recipient().String()
}

func decrypt(t *testing.T, id age.Identity, path string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	r, err := age.Decrypt(f, id)
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.True(t, bytes.HasSuffix(b, []byte("\n")), "one JSON line")
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func TestAgeSinkWritesOneEncryptedFilePerSecret(t *testing.T) {
	id1, r1 := ageKey(t)
	id2, r2 := ageKey(t)
	recipients, err := apply.ParseAgeRecipients("# team keys\n"+r1+"\n\n"+r2+"\n", "keys.txt")
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "secrets")
	sink, err := apply.OpenAgeDir(dir, recipients)
	require.NoError(t, err)

	first := realRecord("Eve@X.test", "../../etc/passwd", "t1")
	require.NoError(t, sink.Deliver(first))
	path := sink.Path(first)
	assert.Equal(t, filepath.Join(dir, "eve@x.test", "%2E.%2F..%2Fetc%2Fpasswd.age"), path)
	for _, id := range []age.Identity{id1, id2} {
		assert.Equal(t, first.Token.Reveal(), decrypt(t, id, path)["token"])
	}
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), first.Token.Reveal())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// A second delivery for the name replaces the file and keeps the one it replaced.
	second := realRecord("eve@x.test", "../../etc/passwd", "t22")
	require.NoError(t, sink.Deliver(second))
	assert.Equal(t, "t22", decrypt(t, id1, path)["token_id"])
	assert.Equal(t, "t1", decrypt(t, id1, strings.TrimSuffix(path, ".age")+"~previous.age")["token_id"])
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 2, "no temporary file is left")
}

// A sub-account without an email keeps its secrets under its ID: two such users' tokens
// of one name never share a file.
func TestAgePathOfAUserWithoutEmail(t *testing.T) {
	sink, err := apply.OpenAgeDir(t.TempDir(), mustRecipients(t))
	require.NoError(t, err)
	a, b := realRecord("", "ci", "t1"), realRecord("", "ci", "t2")
	b.UserID = "u2"
	assert.Equal(t, filepath.Join(sink.Dir(), "u1", "ci.age"), sink.Path(a))
	assert.Equal(t, filepath.Join(sink.Dir(), "u2", "ci.age"), sink.Path(b))
}

func TestAgePathComponentsAreSafe(t *testing.T) {
	sink, err := apply.OpenAgeDir(t.TempDir(), mustRecipients(t))
	require.NoError(t, err)
	seen := map[string]string{}
	for _, name := range []string{".", "..", ".hidden", "a/b", `a\b`, "x~previous", "x", "é", "100%", "sp ace", "ctl\x1b", strings.Repeat("n", 300), strings.Repeat("n", 299) + "m"} {
		p := sink.Path(realRecord("a@x.test", name, "t"))
		base := filepath.Base(p)
		assert.False(t, strings.HasPrefix(base, "."), "%q -> %q", name, base)
		assert.NotContains(t, base, "/")
		assert.NotContains(t, strings.TrimSuffix(base, ".age"), "~previous")
		assert.LessOrEqual(t, len(base), 255)
		assert.Equal(t, filepath.Join(sink.Dir(), "a@x.test"), filepath.Dir(p))
		if other, dup := seen[base]; dup {
			t.Errorf("%q and %q share the file %s", name, other, base)
		}
		seen[base] = name
	}
}

func mustRecipients(t *testing.T) []age.Recipient {
	_, r := ageKey(t)
	rs, err := apply.ParseAgeRecipients(r, "--age-recipient")
	require.NoError(t, err)
	return rs
}

func TestAgeRecipientsAndDirectoryAreChecked(t *testing.T) {
	_, err := apply.ParseAgeRecipients("age1notakey", "--age-recipient")
	assert.ErrorContains(t, err, `--age-recipient: "age1notakey" is not a valid age recipient`)
	_, r := ageKey(t)
	_, err = apply.ParseAgeRecipients(r+"\nage1yubikey1qwertyuiop\n", "keys.txt")
	assert.ErrorContains(t, err, `keys.txt:2: "age1yubikey1qwertyuiop" is a recipient of the age plugin "yubikey"`)
	_, err = apply.ParseAgeRecipients("ssh-ed25519 AAAAnotbase64!", "k")
	assert.ErrorContains(t, err, "not a usable SSH public key")
	_, err = apply.ParseAgeRecipients("-----BEGIN PGP PUBLIC KEY BLOCK-----", "k")
	assert.ErrorContains(t, err, "is not an age recipient")

	// An SSH recipient works end to end: the file decrypts with the SSH private key.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " ci@example"
	rs, err := apply.ParseAgeRecipients(line, "--age-recipient")
	require.NoError(t, err)
	sink, err := apply.OpenAgeDir(t.TempDir(), rs)
	require.NoError(t, err)
	rec := realRecord("a@x.test", "ci", "t3")
	require.NoError(t, sink.Deliver(rec))
	sshID, err := agessh.NewEd25519Identity(priv)
	require.NoError(t, err)
	assert.Equal(t, rec.Token.Reveal(), decrypt(t, sshID, sink.Path(rec))["token"])

	_, err = apply.OpenAgeDir(t.TempDir(), nil)
	assert.ErrorContains(t, err, "no recipient")
	// Nothing can create directories under /proc, not even root.
	_, err = apply.OpenAgeDir("/proc/cbk-sync-no-such-dir/secrets", mustRecipients(t))
	assert.Error(t, err)
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = apply.OpenAgeDir(file, mustRecipients(t))
	assert.Error(t, err)
}
