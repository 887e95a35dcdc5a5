"""Send requests to a rolling service through the host's Traefik during a rollout,
and watch its containers and Traefik's servers: runs on the fleet host.

Each round lists the service's containers with their health, reads the servers of
the service's Traefik service from Traefik's API, and sends one request through
Traefik's private entrypoint with the route's Host header. Stops when the stop
file appears, or after --max-seconds or --max-requests (it never runs unbounded).
Writes a JSON summary: requests, failures, versions answered, the fewest healthy
containers and the fewest Traefik servers seen in a round, and for each container
that went away whether Traefik still listed it in the last round it was seen
running (`out` when the rollout took it out of Traefik before stopping it).
"""

import argparse
import json
import os
import subprocess
import time
import urllib.request


def containers(project, service):
    """(id, state, health) of the service's containers; health '' without a healthcheck."""
    out = subprocess.run(
        ["docker", "ps", "--all", "--no-trunc",
         "--filter", f"label=com.docker.compose.project={project}",
         "--filter", f"label=com.docker.compose.service={service}",
         "--format", "{{.ID}}\t{{.State}}\t{{.Status}}\t{{.Names}}"],
        capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        cid, state, status, name = line.split("\t")
        health = ""
        for word in ("unhealthy", "healthy", "health: starting"):
            if f"({word})" in status:
                health = word.replace("health: ", "")
                break
        found.append((cid, state, health, name))
    return found


def traefik_servers(api, service):
    """The container names Traefik lists as servers of ``service`` (None: unknown)."""
    try:
        with urllib.request.urlopen(f"{api}/api/http/services/{service}@file", timeout=2) as response:
            body = json.loads(response.read().decode())
    except Exception:  # noqa: BLE001 (not there yet, or Traefik busy: unknown this round)
        return None
    urls = [s["url"] for s in (body.get("loadBalancer") or {}).get("servers") or []]
    return {url.split("//", 1)[1].rsplit(":", 1)[0] for url in urls}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--traefik-service", required=True)
    parser.add_argument("--host-header", required=True)
    parser.add_argument("--entrypoint", default="http://127.0.0.1:8000")
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--max-requests", type=int, default=3000)
    args = parser.parse_args()

    deadline = time.monotonic() + args.max_seconds
    last_running = {}  # container id -> "serving" or "out" in the last round it ran
    gone = {}  # container id -> last_running when it stopped running or vanished
    versions = {}
    failures = []
    requests = 0
    rounds = 0
    min_healthy = None
    min_servers = None
    while (requests < args.max_requests and time.monotonic() < deadline
           and not os.path.exists(args.stop_file)):
        rounds += 1
        seen = containers(args.project, args.service)
        servers = traefik_servers(args.api, args.traefik_service)
        if servers is not None:
            min_servers = len(servers) if min_servers is None else min(min_servers, len(servers))
        running = {cid: ("serving" if servers is None or name in servers else "out")
                   for cid, state, _health, name in seen if state == "running"}
        for cid, where in last_running.items():
            if cid not in running and cid not in gone:
                gone[cid] = where
        last_running = running
        healthy = [cid for cid, state, health, _name in seen
                   if state == "running" and health == "healthy"]
        min_healthy = len(healthy) if min_healthy is None else min(min_healthy, len(healthy))
        requests += 1
        request = urllib.request.Request(f"{args.entrypoint}/", headers={"Host": args.host_header})
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                body = response.read().decode().strip()
            versions[body] = versions.get(body, 0) + 1
        except Exception as exc:  # noqa: BLE001 (every failure counts, whatever it is)
            failures.append(f"round {rounds}: {exc}")
        time.sleep(0.05)

    summary = {
        "requests": requests,
        "rounds": rounds,
        "failure_count": len(failures),
        "failures": failures[:20],
        "versions": versions,
        "min_healthy": min_healthy,
        "min_servers": min_servers,
        "gone": gone,
        "stopped_by": "stop file" if os.path.exists(args.stop_file) else "limit",
    }
    with open(args.out, "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
