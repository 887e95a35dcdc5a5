#!/usr/bin/env bash
# `make demo`: the main job, end to end, in a throwaway directory.
# Init a sample project, validate it, show its resolved config and where each
# value came from, show what a mistake looks like; then bring up a two-host local
# fleet (containers with systemd and sshd), bootstrap it, and show its status.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGECRAFT="$PWD/.venv/bin/stagecraft"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagecraft-demo.XXXXXX")
cleanup() {
  if [ -f "$WORK/stagecraft.yml" ] && [ -z "${KEEP_FLEET:-}" ]; then
    (cd "$WORK" && "$STAGECRAFT" infra down --env local >/dev/null 2>&1) || true
  fi
  [ -n "${KEEP_FLEET:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "stagecraft version"
"$STAGECRAFT" version

step "stagecraft init --yes (a project named shop, in $WORK)"
"$STAGECRAFT" init --yes --dir "$WORK" --name shop \
  --environments local,production --services api:8080,web:3000 --cloud digitalocean
cd "$WORK"
# Two local hosts: an edge that also runs the app, and a second app host.
sed -i 's/      - { name: local-1, roles: \[edge, app\] }/      - { name: local-1, roles: [edge, app] }\n      - { name: local-2, roles: [app] }/' stagecraft.yml

step "stagecraft validate"
"$STAGECRAFT" validate

step "stagecraft config show --env local"
"$STAGECRAFT" config show --env local

step "stagecraft config show --env production --sources (first 15 settings)"
"$STAGECRAFT" config show --env production --sources | awk 'NR <= 15'

step "a mistake: an unknown key and a bad port are reported with file:line:column"
sed -e 's/port: 8080/port: 80800/' -e 's/    on: \[app\]/    on: [app]\n    replica: 2/' stagecraft.yml > broken.yml
set +e
"$STAGECRAFT" validate --config broken.yml
code=$?
set -e
echo "(exit code $code: config errors exit 3)"

step "stagecraft status roadmap"
"$STAGECRAFT" status roadmap

step "stagecraft infra up --env local --bootstrap (two Debian 13 hosts as containers, then the bootstrap role)"
"$STAGECRAFT" infra up --env local --bootstrap

step "stagecraft infra status --env local"
"$STAGECRAFT" infra status --env local

step "stagecraft inventory --env local --graph (the same inventory ansible-inventory gets from the plugin)"
"$STAGECRAFT" inventory --env local --graph

step "bootstrap again: nothing to change"
"$STAGECRAFT" bootstrap --env local --quiet --output json | tail -n 1 | python3 -c \
  'import json,sys; r=json.load(sys.stdin); print(r["status"], {h: v["changed"] for h, v in r["hosts"].items()}, "changed per host")'

step "done: removing the fleet (KEEP_FLEET=1 make demo keeps it, in $WORK)"
