package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fakes of the store CLIs the examples/secrets recipes call: each logs its argv, checks
// the arguments the recipe must pass, and keeps what it would store in $FAKE_DIR.
var fakeCLIs = map[string]string{
	"vault": `#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_DIR/argv.log"
[ "$1 $2 $3" = "kv put -mount=secret" ] && [ "$5" = "-" ] || { echo "unexpected: vault $*" >&2; exit 2; }
rec=$(cat); printf '%s\t%s\n' "$4" "$rec" >> "$FAKE_DIR/store" # one write: deliveries run in parallel
`,
	"kubectl": `#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_DIR/argv.log"
case "$1" in
create)
  [ "$2 $3" = "secret generic" ] && [ "$5" = "--from-file=token=/dev/stdin" ] || { echo "unexpected: kubectl $*" >&2; exit 2; }
  printf 'kind: Secret\nmetadata:\n  name: %s\ndata:\n  token: %s\n' "$4" "$(base64 -w0)" ;;
label) cat; shift 6; printf '  label: %s\n' "$@" ;;
apply) obj=$(tr '\n' ' '); printf '%s\n' "$obj" >> "$FAKE_DIR/store" ;;
*) exit 2 ;;
esac
`,
	"aws": `#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_DIR/argv.log"
case "$2" in
describe-secret) grep -q "^$4	" "$FAKE_DIR/store" 2>/dev/null ;;
create-secret|put-secret-value)
  [ "$5 $6" = "--secret-string file:///dev/stdin" ] || { echo "unexpected: aws $*" >&2; exit 2; }
  rec=$(cat /dev/stdin); printf '%s\t%s\n' "$4" "$rec" >> "$FAKE_DIR/store" ;;
*) exit 2 ;;
esac
`,
}

// TestSecretRecipes runs each examples/secrets recipe, as the README gives it, against
// a fake of its store CLI, with lost answers injected: every live token's secret is
// stored exactly once, and no secret is ever in a command line.
func TestSecretRecipes(t *testing.T) {
	examples, err := filepath.Abs(filepath.Join("..", "..", "examples", "secrets"))
	require.NoError(t, err)
	tokenRE := regexp.MustCompile(`"token_id":"([^"]+)"`)
	for _, tc := range []struct {
		name, cli, cmdline string
		// stored returns the token IDs in one line of the store, after checking it.
		stored func(t *testing.T, line string) string
	}{
		{"vault", "vault", "sh " + filepath.Join(examples, "to-vault.sh"),
			func(t *testing.T, line string) string {
				path, rec, _ := strings.Cut(line, "\t")
				require.Regexp(t, `^chatbotkit/u0[0-7]@acme\.test/(ci|deploy)$`, path)
				return parseRecord(t, []byte(rec))
			}},
		{"kubernetes", "kubectl", "sh " + filepath.Join(examples, "to-kubernetes.sh"),
			func(t *testing.T, line string) string {
				require.Regexp(t, `name: cbk-u0[0-7]-acme-test-(ci|deploy)-[0-9a-f]{10} `, line)
				m := regexp.MustCompile(`token: (\S+)`).FindStringSubmatch(line)
				require.NotNil(t, m, line)
				tok, err := base64.StdEncoding.DecodeString(m[1])
				require.NoError(t, err)
				require.Regexp(t, `^sk-[0-9a-f]{64}$`, string(tok), "the key token holds the secret alone")
				id := regexp.MustCompile(`label: chatbotkit.com/token-id=(\S+)`).FindStringSubmatch(line)
				require.NotNil(t, id, line)
				return id[1]
			}},
		{"aws", "aws", "sh " + filepath.Join(examples, "to-aws-secrets-manager.sh"),
			func(t *testing.T, line string) string {
				id, rec, _ := strings.Cut(line, "\t")
				require.Regexp(t, `^chatbotkit/u0[0-7]@acme\.test/(ci|deploy)$`, id)
				m := tokenRE.FindStringSubmatch(rec)
				require.NotNil(t, m, line)
				return parseRecord(t, []byte(rec))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newSinkWorld(t, 3, 0.2)
			bin := filepath.Join(w.dir, "bin")
			require.NoError(t, os.Mkdir(bin, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(bin, tc.cli), []byte(fakeCLIs[tc.cli]), 0o755))
			t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			t.Setenv("FAKE_DIR", w.dir)

			code, log := 0, ""
			for range 4 {
				code, log = w.run("sync", "-f", w.cfg, "--yes", "--secrets-exec", tc.cmdline)
				if code == 0 {
					break
				}
				require.Equal(t, exitPartial, code, log)
			}
			require.Equal(t, 0, code, "not converged after four runs:\n%s", log)

			store, err := os.ReadFile(filepath.Join(w.dir, "store"))
			require.NoError(t, err)
			delivered := map[string]int{}
			sc := bufio.NewScanner(bytes.NewReader(store))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				if line := strings.TrimSpace(sc.Text()); line != "" {
					delivered[tc.stored(t, line)]++
				}
			}
			w.checkDelivered(delivered, true)
			argv, err := os.ReadFile(filepath.Join(w.dir, "argv.log"))
			require.NoError(t, err)
			assert.NotRegexp(t, secretRE, string(argv), "a secret on a command line")
		})
	}
}

// TestKubernetesSecretNames: the Secret names of examples/secrets/to-kubernetes.sh
// never collide, where cutting or replacing characters would make two the same, and
// are valid DNS labels; the same email in another case is the same user, so the same
// Secret.
func TestKubernetesSecretNames(t *testing.T) {
	script, err := filepath.Abs(filepath.Join("..", "..", "examples", "secrets", "to-kubernetes.sh"))
	require.NoError(t, err)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "kubectl"), []byte(fakeCLIs["kubectl"]), 0o755))
	long := strings.Repeat("customer", 6) + "@example.test" // 61 characters
	name := func(email, token string) string {
		t.Helper()
		cmd := exec.Command("sh", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "FAKE_DIR="+dir,
			"CBK_SYNC_EMAIL="+email, "CBK_SYNC_TOKEN_NAME="+token, "CBK_SYNC_TOKEN_ID=t1", "CBK_SYNC_USER_ID=u1")
		cmd.Stdin = strings.NewReader(`{"email":"` + email + `","token":"sk-` + strings.Repeat("ab", 32) + `"}`)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		m := regexp.MustCompile(`^stored secret/(\S+)\n$`).FindStringSubmatch(string(out))
		require.NotNil(t, m, "%s", out)
		require.LessOrEqual(t, len(m[1]), 63, m[1])
		require.Regexp(t, `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, m[1])
		return m[1]
	}
	pairs := [][2]string{
		{long, "ci"}, {long, "ci-nightly"}, // the same 63 characters once cut
		{"a.b@x.test", "ci"}, {"a-b@x.test", "ci"}, // the same once . is -
		{"a@x.test", "b-c"}, {"a-b@x.test", "c"}, // the same once joined by -
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		n := name(p[0], p[1])
		if other, ok := seen[n]; ok {
			t.Errorf("%v and %v share the Secret %s", other, p, n)
		}
		seen[n] = p
		assert.Equal(t, n, name(p[0], p[1]), "the name is not stable")
	}
	assert.Equal(t, name("a.b@x.test", "ci"), name("A.B@X.test", "ci"), "one user (emails compare by ASCII case), one Secret")
	assert.Regexp(t, `^cbk-a-b-x-test-ci-[0-9a-f]{10}$`, name("a.b@x.test", "ci"))
}
