#!/usr/bin/env bash
# `make demo`: the main job, end to end, in a throwaway directory.
# Today: init a sample project, validate it, show its resolved config and
# where each value came from, and show what a mistake looks like.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGECRAFT="$PWD/.venv/bin/stagecraft"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagecraft-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "stagecraft version"
"$STAGECRAFT" version

step "stagecraft init --yes (a project named shop, in $WORK)"
"$STAGECRAFT" init --yes --dir "$WORK" --name shop \
  --environments local,production --services api:8080,web:3000 --cloud digitalocean
cd "$WORK"

step "stagecraft validate"
"$STAGECRAFT" validate

step "stagecraft config show --env local"
"$STAGECRAFT" config show --env local

step "stagecraft config show --env production --sources (first 15 settings)"
"$STAGECRAFT" config show --env production --sources | head -n 15

step "a mistake: an unknown key and a bad port are reported with file:line:column"
sed -e 's/port: 8080/port: 80800/' -e 's/    on: \[app\]/    on: [app]\n    replica: 2/' stagecraft.yml > broken.yml
set +e
"$STAGECRAFT" validate --config broken.yml
code=$?
set -e
echo "(exit code $code: config errors exit 3)"

step "stagecraft status roadmap"
"$STAGECRAFT" status roadmap
