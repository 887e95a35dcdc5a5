#!/usr/bin/env bash
# Make sure a Docker Engine answers: use the running one, or install Debian's
# docker.io and start dockerd (machines without systemd, like CI sandboxes).
# Exit 10 with a hint when no engine can be had.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "docker: no engine answers; installing Debian's docker.io ..." >&2
    if [ ! -f /var/lib/apt/periodic/stagecraft-updated ]; then
      apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/stagecraft-updated
    fi
    NEEDRESTART_SUSPEND=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  else
    echo "error: no Docker Engine answers and dockerd is not installed" >&2
    echo "hint: install Docker Engine (apt-get install docker.io) or start it, then run this again" >&2
    exit 10
  fi
fi

if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker || true
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker: starting dockerd (log: /var/log/dockerd.log) ..." >&2
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not answer within 60 s" >&2
echo "hint: read /var/log/dockerd.log" >&2
exit 10
