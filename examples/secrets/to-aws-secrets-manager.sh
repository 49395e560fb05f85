#!/bin/sh
# cbk-sync --secrets-exec hand-off: stores one new token secret in AWS Secrets Manager.
# Needs: sh, the AWS CLI v2 with credentials allowed secretsmanager:CreateSecret and
# secretsmanager:PutSecretValue (AWS_REGION or a profile set as usual).
# Copy it into your repository and call it as
#   cbk-sync sync ... --secrets-exec 'sh ci/to-aws-secrets-manager.sh'
# The secret is chatbotkit/<email>/<token-name>, its value the whole JSON record; a new
# token of the same name becomes the secret's current version (older versions stay).
# The record goes to the AWS CLI through a file descriptor (file:///dev/stdin), never on
# a command line; exit 0 = stored.
set -eu
id="chatbotkit/$CBK_SYNC_EMAIL/$CBK_SYNC_TOKEN_NAME"
record=$(cat)
if aws secretsmanager describe-secret --secret-id "$id" >/dev/null 2>&1; then
  printf '%s' "$record" | aws secretsmanager put-secret-value --secret-id "$id" --secret-string file:///dev/stdin >/dev/null
else
  printf '%s' "$record" | aws secretsmanager create-secret --name "$id" --secret-string file:///dev/stdin \
    --tags Key=managed-by,Value=cbk-sync >/dev/null
fi
echo "stored $id"
