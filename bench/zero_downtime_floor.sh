#!/usr/bin/env bash
# The zero-downtime floor of a rollout, on one host (bench/floor.py sends it over one
# SSH command per host, all hosts at once). The docker-rollout move with draining,
# and nothing else:
#   1. pull the service's image when the host lacks it;
#   2. `compose up --no-recreate --scale SERVICE=old+replicas` beside the old containers;
#   3. poll `docker inspect` until the new containers are healthy;
#   4. take the old ones out of the load balancer: a Traefik file-provider service
#      naming only the new containers' addresses, written with one rename, then poll
#      Traefik's API until it serves exactly those;
#   5. wait DRAIN seconds for requests in flight, then stop and remove the old ones.
#
# usage: bash -s -- PROJECT COMPOSE_FILE SERVICE REPLICAS PORT DYNAMIC_DIR DRAIN STOP_GRACE
set -euo pipefail

project=$1 compose_file=$2 service=$3 replicas=$4 port=$5 dynamic_dir=$6 drain=$7 grace=$8
network=stagecraft
balancer="floor-${project}-${service}"
compose=(docker compose -p "$project" -f "$compose_file")

# 1. Pull only what is missing (release images are immutable tags).
for image in $("${compose[@]}" config --images "$service"); do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull -q "$image" >/dev/null
done

# 2. New containers beside the old ones.
mapfile -t old < <("${compose[@]}" ps -q "$service")
"${compose[@]}" up -d --no-deps --no-recreate --quiet-pull \
  --scale "$service=$(( ${#old[@]} + replicas ))" "$service" 2>/dev/null
mapfile -t all < <("${compose[@]}" ps -q "$service")
new=()
for id in "${all[@]}"; do
  [[ " ${old[*]} " == *" $id "* ]] || new+=("$id")
done

# 3. Until every new container is healthy.
until [ -z "$(docker inspect -f '{{.State.Health.Status}}' "${new[@]}" | grep -v '^healthy$')" ]; do
  sleep 0.1
done

# 4. The load balancer serves only the new containers.
urls=()
for id in "${new[@]}"; do
  address=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$id")
  urls+=("http://$address:$port")
done
{
  printf 'http:\n  services:\n    %s:\n      loadBalancer:\n        servers:\n' "$balancer"
  for url in "${urls[@]}"; do printf '          - url: %s\n' "$url"; done
} > "$dynamic_dir/.$balancer.yml.tmp"
mv "$dynamic_dir/.$balancer.yml.tmp" "$dynamic_dir/$balancer.yml"
want=$(printf '%s\n' "${urls[@]}" | sort | paste -sd, -)
until [ "$(curl -fsS "http://127.0.0.1:8080/api/http/services/$balancer@file" 2>/dev/null \
          | python3 -c 'import json,sys; print(",".join(sorted(s["url"] for s in json.load(sys.stdin)["loadBalancer"]["servers"])))' 2>/dev/null)" = "$want" ]; do
  sleep 0.05
done

# 5. Requests in flight finish; then the old containers go.
sleep "$drain"
if [ ${#old[@]} -gt 0 ]; then
  docker stop -t "$grace" "${old[@]}" >/dev/null
  docker rm "${old[@]}" >/dev/null
fi
