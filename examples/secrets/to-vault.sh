#!/usr/bin/env sh
# Hands the token secrets that cbk-sync wrote to --secrets-out over to a secret store
# (HashiCorp Vault KV v2 here; swap the one `vault kv put` line for your store), then
# shreds the file. Each line is {email, user_id, token_name, token_id, token,
# created_at}. The secret goes to vault on stdin, never on a command line or to the log.
set -eu
file=${1:?usage: to-vault.sh SECRETS.jsonl}
[ -s "$file" ] || { echo "no new token secrets"; exit 0; }
while IFS= read -r line; do
  email=$(printf '%s' "$line" | jq -r .email)
  name=$(printf '%s' "$line" | jq -r .token_name)
  printf '%s' "$line" | jq '{token, token_id, created_at}' |
    vault kv put "secret/chatbotkit/$email/$name" - >/dev/null
  echo "stored secret/chatbotkit/$email/$name"
done < "$file"
shred -u "$file" 2>/dev/null || rm -f "$file"
