#!/usr/bin/env bash
# `make demo`: the main job, end to end, in a throwaway directory.
# Init a sample project, validate it, show its resolved config and where each
# value came from, show what a mistake looks like; then take the example app
# (examples/shop) to a two-host local fleet: bootstrap, plan, deploy, roll a new
# version under a load loop (0 failed requests), a broken version that never
# takes traffic, and a rollback.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
STAGECRAFT="$PWD/.venv/bin/stagecraft"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagecraft-demo.XXXXXX")
APP="$WORK/shop-app"
cleanup() {
  if [ -f "$APP/stagecraft.yml" ] && [ -z "${KEEP_FLEET:-}" ]; then
    (cd "$APP" && "$STAGECRAFT" infra down --env local --yes >/dev/null 2>&1) || true
  fi
  [ -n "${KEEP_FLEET:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "stagecraft version"
"$STAGECRAFT" version

step "stagecraft init --yes (a project named shop, in $WORK)"
"$STAGECRAFT" init --yes --dir "$WORK" --name shop \
  --environments local,production --services api:8080,web:3000 --cloud local
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

step "the example app: examples/shop (a web service and a worker) in $APP, as a git repository"
mkdir -p "$APP"
cp -r "$REPO/examples/shop/." "$APP/"
cd "$APP"
sed -i "0,/name: shop/s//name: demo$$/" stagecraft.yml
# The local environment's secrets (database password): generated, never committed.
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
sed "s/change-me/$PASSWORD/g" .env.local.example > .env.local
printf '.stagecraft/\n.env.*\n!.env.*.example\n' > .gitignore
git init -q && git add -A && git -c user.name=demo -c user.email=demo@example.com commit -qm "example app"
export STAGECRAFT_ENV=local
commit() { git -c user.name=demo -c user.email=demo@example.com commit -qam "$1"; }
set_version() { sed -i "s/APP_VERSION: \"[^\"]*\"/APP_VERSION: \"$1\"/" stagecraft.yml; commit "version $1"; }

step "stagecraft infra up --bootstrap (two Debian 13 hosts as containers, a TLS registry, then the bootstrap role)"
"$STAGECRAFT" infra up --bootstrap
"$STAGECRAFT" infra status

step "bootstrap again: nothing to change"
"$STAGECRAFT" bootstrap --quiet --output json | tail -n 1 | python3 -c \
  'import json,sys; r=json.load(sys.stdin); print(r["status"], {h: v["changed"] for h, v in r["hosts"].items()}, "changed per host")'

PORT=$(python3 -c 'import json; print(next(h["http_port"] for h in json.load(open(".stagecraft/local/hosts.json"))["hosts"] if "edge" in h["roles"]))')
edge() { curl -s -H 'Host: shop.localhost' "http://127.0.0.1:$PORT$1"; echo; }
load() { "$REPO/.venv/bin/python" "$REPO/scripts/loadloop.py" --port "$PORT" --host shop.localhost --count "$1" > "$WORK/load.json" & LOAD=$!; }
load_report() { wait "$LOAD"; python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("load loop: %d requests, %d failed, versions %s, p99 %s ms" % (r["sent"], r["failed"], r["versions"], r["p99_ms"]))' "$WORK/load.json"; }

step "stagecraft plan (first deploy: everything is new)"
set_version v1
"$STAGECRAFT" plan

step "stagecraft deploy: build, push to the fleet's registry, start the database, run the pre-deploy migrations, roll out v1, run the post-deploy ones"
"$STAGECRAFT" deploy --yes
echo "through the edge (127.0.0.1:$PORT, Host shop.localhost): the version and what the database holds"
edge /version
V1=$("$STAGECRAFT" releases list --output json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["result"] == "succeeded"][0])')
"$STAGECRAFT" releases show "$V1"

step "stagecraft deploy again: one probe per host, nothing to do, no playbook"
"$STAGECRAFT" deploy --yes --skip-build

step "stagecraft status: each host's release, containers and health, Traefik routes, the lock"
"$STAGECRAFT" status

step "v2: plan shows the change, deploy rolls it while a load loop runs against the edge"
set_version v2
"$STAGECRAFT" plan | tail -n 12
load 2000
"$STAGECRAFT" deploy --yes --quiet
load_report
edge /version

step "v3 with a failing healthcheck: the deploy fails, v2 keeps serving"
sed -i 's/APP_FAIL_HEALTH: "0"/APP_FAIL_HEALTH: "1"/' stagecraft.yml
set_version v3
load 1500
set +e
"$STAGECRAFT" deploy --yes --quiet
code=$?
set -e
echo "(deploy exit code $code: a failed rollout exits 6)"
load_report
edge /version
sed -i 's/APP_FAIL_HEALTH: "1"/APP_FAIL_HEALTH: "0"/' stagecraft.yml && commit "healthy again"

step "stagecraft releases list"
"$STAGECRAFT" releases list

step "stagecraft audit -n 6: what the hosts' audit logs say"
"$STAGECRAFT" audit -n 6

step "stagecraft rollback --to the v1 release, under load"
V1=$("$STAGECRAFT" releases list --output json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["result"] == "succeeded"][-1])')
load 1500
"$STAGECRAFT" rollback --to "$V1" --yes --quiet
load_report
edge /version
"$STAGECRAFT" releases list
"$STAGECRAFT" status

step "done: removing the fleet (KEEP_FLEET=1 make demo keeps it, in $APP)"
