"""Watch a rolling service during a rollout the way Traefik's Docker provider does,
and send it requests: runs on the fleet host, next to Docker.

Each round lists the service's containers with their health, sends one request to
the next *healthy* one (only healthy containers get traffic behind Traefik), and
notes the state of every container it sees. Stops when the stop file appears, or
after --max-seconds or --max-requests (it never runs unbounded). Writes a JSON
summary: requests, failures, versions answered, the fewest healthy containers seen
in a round, and for each container that went away the last state it was seen
running in (a drained container is `unhealthy` before it goes).
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
         "--format", "{{.ID}}\t{{.State}}\t{{.Status}}"],
        capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        cid, state, status = line.split("\t")
        health = ""
        for word in ("unhealthy", "healthy", "health: starting"):
            if f"({word})" in status:
                health = word.replace("health: ", "")
                break
        found.append((cid, state, health))
    return found


def address(cid, cache):
    if cid not in cache:
        cache[cid] = subprocess.run(
            ["docker", "inspect", "--format",
             "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", cid],
            capture_output=True, text=True, check=True).stdout.split()[0]
    return cache[cid]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--max-requests", type=int, default=3000)
    args = parser.parse_args()

    deadline = time.monotonic() + args.max_seconds
    addresses = {}
    last_running = {}  # container id -> health in the last round it was running
    gone = {}  # container id -> last_running when it stopped running or vanished
    versions = {}
    failures = []
    requests = 0
    rounds = 0
    min_healthy = None
    turn = 0
    while (requests < args.max_requests and time.monotonic() < deadline
           and not os.path.exists(args.stop_file)):
        rounds += 1
        seen = containers(args.project, args.service)
        running = {cid: health for cid, state, health in seen if state == "running"}
        for cid, health in last_running.items():
            if cid not in running and cid not in gone:
                gone[cid] = health
        last_running = running
        healthy = sorted(cid for cid, health in running.items() if health == "healthy")
        min_healthy = len(healthy) if min_healthy is None else min(min_healthy, len(healthy))
        requests += 1
        if not healthy:
            failures.append(f"round {rounds}: no healthy container")
        else:
            cid = healthy[turn % len(healthy)]
            turn += 1
            try:
                url = f"http://{address(cid, addresses)}:{args.port}/"
                with urllib.request.urlopen(url, timeout=3) as response:
                    body = response.read().decode().strip()
                versions[body] = versions.get(body, 0) + 1
            except Exception as exc:  # noqa: BLE001 (every failure counts, whatever it is)
                failures.append(f"round {rounds}: {cid[:12]}: {exc}")
        time.sleep(0.05)

    summary = {
        "requests": requests,
        "rounds": rounds,
        "failure_count": len(failures),
        "failures": failures[:20],
        "versions": versions,
        "min_healthy": min_healthy,
        "gone": gone,
        "stopped_by": "stop file" if os.path.exists(args.stop_file) else "limit",
    }
    with open(args.out, "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
