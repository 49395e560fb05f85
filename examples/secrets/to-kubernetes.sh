#!/bin/sh
# cbk-sync --secrets-exec hand-off: stores one new token secret as a Kubernetes Secret.
# Needs: sh, sed, kubectl with a context (or in-cluster service account) allowed to
# create and update Secrets in $CBK_SYNC_NAMESPACE (default: the current namespace).
# Copy it into your repository and call it as
#   cbk-sync sync ... --secrets-exec 'sh ci/to-kubernetes.sh'
# cbk-sync runs it once per secret with the JSON record on stdin, and CBK_SYNC_EMAIL,
# CBK_SYNC_TOKEN_NAME, CBK_SYNC_TOKEN_ID, CBK_SYNC_USER_ID in the environment. The
# Secret is named cbk-<email>-<token-name>-<hash>: the readable part lower-cased, other
# characters as "-", cut to 48 characters; <hash> is the first 10 hex digits of the
# SHA-256 of the email (lower-cased, as cbk-sync compares emails) and the token name, so
# two tokens never share a Secret even where the readable parts do (a.b@x and a-b@x,
# or ci and ci-nightly of a long email). At most 63 characters, a valid DNS label. The
# Secret has the key "token" (the secret) and labels saying whose it is. The secret goes
# to kubectl on stdin, never on a command line; exit 0 = done. A record marked
# "revoked": true (CBK_SYNC_REVOKED=1) deletes the Secret if it still holds that token.
set -eu
record=$(cat)
token=$(printf '%s' "$record" | sed -n 's/.*"token":"\(sk-[0-9a-f]*\)".*/\1/p')
[ -n "$token" ] || { echo "no token in the record" >&2; exit 1; }
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }
email=$(printf '%s' "$CBK_SYNC_EMAIL" | tr 'A-Z' 'a-z')
hash=$(printf '%s\n%s' "$email" "$CBK_SYNC_TOKEN_NAME" | sha256 | cut -c1-10)
readable=$(printf '%s-%s' "$email" "$CBK_SYNC_TOKEN_NAME" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9-' '-' | cut -c1-48 | sed 's/-*$//')
name="cbk-$readable-$hash"
ns=${CBK_SYNC_NAMESPACE:+--namespace=$CBK_SYNC_NAMESPACE}
if [ "${CBK_SYNC_REVOKED:-}" = 1 ]; then
  # The token was revoked after its secret was stored: a Secret still holding it is
  # deleted (its previous value was replaced), and the next run stores a live one.
  held=$(kubectl get secret "$name" $ns -o 'jsonpath={.metadata.labels.chatbotkit\.com/token-id}' 2>/dev/null || true)
  if [ "$held" = "$CBK_SYNC_TOKEN_ID" ]; then
    kubectl delete secret "$name" $ns >/dev/null
    echo "deleted secret/$name: its token was revoked"
  else
    echo "secret/$name does not hold token $CBK_SYNC_TOKEN_ID: nothing to do"
  fi
  exit 0
fi
printf '%s' "$token" |
  kubectl create secret generic "$name" $ns --from-file=token=/dev/stdin --dry-run=client -o yaml |
  kubectl label --local -f - -o yaml app.kubernetes.io/managed-by=cbk-sync "chatbotkit.com/token-id=$CBK_SYNC_TOKEN_ID" |
  kubectl apply $ns -f - >/dev/null
echo "stored secret/$name"
