#!/bin/sh
# cbk-sync --secrets-exec hand-off: stores one new token secret in AWS Secrets Manager.
# Needs: sh, the AWS CLI v2 with credentials allowed secretsmanager:DescribeSecret,
# CreateSecret, PutSecretValue, TagResource, GetSecretValue, UpdateSecretVersionStage
# and DeleteSecret (AWS_REGION or a profile set as usual).
# Copy it into your repository and call it as
#   cbk-sync sync ... --secrets-exec 'sh ci/to-aws-secrets-manager.sh'
# The secret is chatbotkit/<email>/<token-name>, its value the whole JSON record; a new
# token of the same name becomes the secret's current version (older versions stay). A
# record marked "revoked": true (CBK_SYNC_REVOKED=1) makes the version before current
# again, or deletes the secret when it has none.
# The record goes to the AWS CLI through a file descriptor (file:///dev/stdin), never on
# a command line; exit 0 = stored.
set -eu
id="chatbotkit/$CBK_SYNC_EMAIL/$CBK_SYNC_TOKEN_NAME"
record=$(cat)
if [ "${CBK_SYNC_REVOKED:-}" = 1 ]; then
  # The token was revoked after its secret was stored: if the current version holds
  # it, the version before becomes current again (or the secret is deleted if none).
  current=$(aws secretsmanager get-secret-value --secret-id "$id" --query SecretString --output text 2>/dev/null || true)
  case "$current" in
  *"\"token_id\":\"$CBK_SYNC_TOKEN_ID\""*) ;;
  *) echo "$id does not hold token $CBK_SYNC_TOKEN_ID: nothing to do"; exit 0 ;;
  esac
  cur=$(aws secretsmanager get-secret-value --secret-id "$id" --query VersionId --output text)
  prev=$(aws secretsmanager get-secret-value --secret-id "$id" --version-stage AWSPREVIOUS --query VersionId --output text 2>/dev/null || true)
  if [ -n "$prev" ] && [ "$prev" != "None" ]; then
    aws secretsmanager update-secret-version-stage --secret-id "$id" --version-stage AWSCURRENT \
      --move-to-version-id "$prev" --remove-from-version-id "$cur" >/dev/null
    echo "rolled $id back to version $prev"
  else
    aws secretsmanager delete-secret --secret-id "$id" --force-delete-without-recovery >/dev/null
    echo "deleted $id: it held only the revoked secret"
  fi
  exit 0
fi
if aws secretsmanager describe-secret --secret-id "$id" >/dev/null 2>&1; then
  printf '%s' "$record" | aws secretsmanager put-secret-value --secret-id "$id" --secret-string file:///dev/stdin >/dev/null
else
  printf '%s' "$record" | aws secretsmanager create-secret --name "$id" --secret-string file:///dev/stdin \
    --tags Key=managed-by,Value=cbk-sync >/dev/null
fi
echo "stored $id"
