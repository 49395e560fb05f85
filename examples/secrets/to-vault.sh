#!/bin/sh
# cbk-sync --secrets-exec hand-off: stores one new token secret in HashiCorp Vault (KV v2).
# Needs: sh, the vault CLI, VAULT_ADDR and a VAULT_TOKEN (or another auth method)
# allowed to write, read and roll back secret/data/chatbotkit/* and read its metadata.
# Copy it into your repository and call it as
#   cbk-sync sync ... --secrets-exec 'sh ci/to-vault.sh'
# The secret is secret/chatbotkit/<email>/<token-name>, its keys the record's fields; a
# new token of the same name is a new version. A record marked "revoked": true
# (CBK_SYNC_REVOKED=1: the token was revoked after its secret was stored) rolls the path
# back to the version before, or deletes the version when there is none. The record
# goes to vault on stdin, never on a command line; exit 0 = done.
set -eu
path="chatbotkit/$CBK_SYNC_EMAIL/$CBK_SYNC_TOKEN_NAME"
if [ "${CBK_SYNC_REVOKED:-}" = 1 ]; then
  cat >/dev/null
  held=$(vault kv get -mount=secret -field=token_id "$path" 2>/dev/null || true)
  if [ "$held" != "$CBK_SYNC_TOKEN_ID" ]; then
    echo "$path does not hold token $CBK_SYNC_TOKEN_ID: nothing to roll back"
    exit 0
  fi
  version=$(vault kv metadata get -mount=secret -field=current_version "$path")
  if [ "$version" -gt 1 ]; then
    vault kv rollback -mount=secret -version=$((version - 1)) "$path" >/dev/null
    echo "rolled $path back to version $((version - 1))"
  else
    vault kv delete -mount=secret "$path" >/dev/null
    echo "deleted $path: it held only the revoked secret"
  fi
  exit 0
fi
vault kv put -mount=secret "$path" - >/dev/null
echo "stored $path"
