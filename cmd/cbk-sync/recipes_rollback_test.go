package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Versioned fakes of the store CLIs: each secret is a directory of numbered versions
// with a "current" (and for AWS a "previous") pointer, enough to check that a recipe
// given a revoked record puts back the version before, or deletes the secret.
var versionedCLIs = map[string]string{
	"vault": `#!/bin/sh
set -eu
for a in "$@"; do case "$a" in chatbotkit/*) d="$FAKE_DIR/kv/$(printf '%s' "$a" | tr '/' '_')" ;; esac; done
case "$1 $2" in
"kv put") mkdir -p "$d"; n=$(( $(ls "$d" | grep -c '^v' || true) + 1 )); cat > "$d/v$n"; echo $n > "$d/current" ;;
"kv get") [ -e "$d/current" ] || exit 2; sed -n 's/.*"token_id":"\([^"]*\)".*/\1/p' "$d/v$(cat "$d/current")" ;;
"kv metadata") cat "$d/current" ;;
"kv rollback") v=${4#-version=}; n=$(( $(ls "$d" | grep -c '^v') + 1 )); cp "$d/v$v" "$d/v$n"; echo $n > "$d/current" ;;
"kv delete") rm "$d/current" ;;
*) echo "unexpected: vault $*" >&2; exit 2 ;;
esac
`,
	"aws": `#!/bin/sh
set -eu
d="$FAKE_DIR/kv/$(printf '%s' "$4" | tr '/' '_')"
case "$2" in
describe-secret) [ -e "$d/current" ] ;;
create-secret) mkdir -p "$d"; cat /dev/stdin > "$d/v1"; echo 1 > "$d/current" ;;
put-secret-value) n=$(( $(ls "$d" | grep -c '^v') + 1 )); cat /dev/stdin > "$d/v$n"; cp "$d/current" "$d/previous"; echo $n > "$d/current" ;;
get-secret-value)
  ptr=current; [ "$5" = "--version-stage" ] && { ptr=previous; shift 2; }
  [ -e "$d/$ptr" ] || exit 254
  case "$6" in SecretString) cat "$d/v$(cat "$d/$ptr")" ;; VersionId) cat "$d/$ptr" ;; esac ;;
update-secret-version-stage) [ "$6 $7" = "AWSCURRENT --move-to-version-id" ] || exit 2; cp "$d/current" "$d/previous"; echo "$8" > "$d/current" ;;
delete-secret) rm -r "$d" ;;
*) echo "unexpected: aws $*" >&2; exit 2 ;;
esac
`,
	"kubectl": `#!/bin/sh
set -eu
mkdir -p "$FAKE_DIR/kv"
case "$1" in
create) printf 'name: %s\ntoken: %s\n' "$4" "$(base64 -w0)" ;;
label) cat; shift 5; printf 'label: %s\n' "$@" ;;
apply) obj=$(cat); name=$(printf '%s\n' "$obj" | sed -n 's/^name: //p'); printf '%s\n' "$obj" > "$FAKE_DIR/kv/$name" ;;
get) [ -e "$FAKE_DIR/kv/$3" ] || exit 1; sed -n 's|^label: chatbotkit.com/token-id=||p' "$FAKE_DIR/kv/$3" ;;
delete) rm "$FAKE_DIR/kv/$3" ;;
*) echo "unexpected: kubectl $*" >&2; exit 2 ;;
esac
`,
}

// TestSecretRecipesRollBackARevokedSecret: each recipe, given a record marked revoked
// (CBK_SYNC_REVOKED=1) for the version it holds, makes the version before current
// again (Vault, AWS) or deletes the secret (Kubernetes); a revoked record of a token it
// does not hold changes nothing.
func TestSecretRecipesRollBackARevokedSecret(t *testing.T) {
	examples, err := filepath.Abs(filepath.Join("..", "..", "examples", "secrets"))
	require.NoError(t, err)
	for _, tc := range []struct{ cli, script, afterRollback string }{
		{"vault", "to-vault.sh", "t1"},
		{"aws", "to-aws-secrets-manager.sh", "t1"},
		{"kubectl", "to-kubernetes.sh", ""},
	} {
		t.Run(tc.cli, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			require.NoError(t, os.Mkdir(bin, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(bin, tc.cli), []byte(versionedCLIs[tc.cli]), 0o755))
			hand := func(id string, revoked bool) {
				rec := fmt.Sprintf(`{"email":"a@acme.test","user_id":"u1","token_name":"ci","token_id":%q,"token":"sk-%064x","created_at":"2026-01-02T03:04:05Z"`, id, len(id)+7)
				env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "FAKE_DIR="+dir,
					"CBK_SYNC_EMAIL=a@acme.test", "CBK_SYNC_USER_ID=u1", "CBK_SYNC_TOKEN_NAME=ci", "CBK_SYNC_TOKEN_ID="+id)
				if revoked {
					rec += `,"revoked":true`
					env = append(env, "CBK_SYNC_REVOKED=1")
				}
				cmd := exec.Command("sh", filepath.Join(examples, tc.script))
				cmd.Env, cmd.Stdin = env, strings.NewReader(rec+"}\n")
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "%s", out)
			}
			held := func() string { // the token ID the store serves now, "" if none
				switch tc.cli {
				case "vault":
					d := filepath.Join(dir, "kv", "chatbotkit_a@acme.test_ci")
					cur, err := os.ReadFile(filepath.Join(d, "current"))
					if err != nil {
						return ""
					}
					b, err := os.ReadFile(filepath.Join(d, "v"+strings.TrimSpace(string(cur))))
					require.NoError(t, err)
					return tokenIDOf(string(b))
				case "aws":
					d := filepath.Join(dir, "kv", "chatbotkit_a@acme.test_ci")
					cur, err := os.ReadFile(filepath.Join(d, "current"))
					if err != nil {
						return ""
					}
					b, err := os.ReadFile(filepath.Join(d, "v"+strings.TrimSpace(string(cur))))
					require.NoError(t, err)
					return tokenIDOf(string(b))
				}
				matches, _ := filepath.Glob(filepath.Join(dir, "kv", "cbk-*"))
				if len(matches) == 0 {
					return ""
				}
				b, err := os.ReadFile(matches[0])
				require.NoError(t, err)
				_, id, _ := strings.Cut(string(b), "label: chatbotkit.com/token-id=")
				return strings.TrimSpace(id)
			}
			hand("t1", false)
			hand("t2", false)
			require.Equal(t, "t2", held())
			hand("t9", true) // not the version held: nothing changes
			require.Equal(t, "t2", held())
			hand("t2", true)
			assert.Equal(t, tc.afterRollback, held())
		})
	}
}

func tokenIDOf(rec string) string {
	_, rest, ok := strings.Cut(rec, `"token_id":"`)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, `"`)
	return id
}
