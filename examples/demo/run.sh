#!/usr/bin/env bash
# The main job on the embedded emulator: no account, no credentials, no network.
# Plans and applies examples/demo/cbk-sync.yaml against a drifted copy of
# examples/demo/remote-state.json through the real HTTP client, then syncs again to
# show that nothing is left to do. Works on a copy in a temporary directory, so no
# tracked file changes. Token secrets go to a 0600 file there and are never printed.
# From a checkout it builds cbk-sync; from an unpacked release archive it runs the
# cbk-sync that came with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp examples/demo/remote-state.json "$work/state.json"
if [ -f go.mod ]; then
  go build -o "$work/cbk-sync" ./cmd/cbk-sync
else
  cp cbk-sync "$work/cbk-sync" # an unpacked release archive: its own binary
fi
cbk() { "$work/cbk-sync" "$@"; }

echo "== cbk-sync sync (first run: repairs the drift)"
cbk sync -f examples/demo/cbk-sync.yaml --emulator "$work/state.json" --yes \
  --secrets-out "$work/secrets.jsonl" --report "$work/report.json"
echo
echo "== report: $(jq -c '.totals' "$work/report.json" 2>/dev/null || grep -o '"totals": {[^}]*}' "$work/report.json" | tr -d '\n ')"
echo "== secrets: $(wc -l < "$work/secrets.jsonl") new token secrets written to a 0600 file (not shown)"
echo
echo "== cbk-sync sync (second run: nothing to do)"
cbk sync -f examples/demo/cbk-sync.yaml --emulator "$work/state.json" --yes \
  --secrets-out "$work/secrets.jsonl"
