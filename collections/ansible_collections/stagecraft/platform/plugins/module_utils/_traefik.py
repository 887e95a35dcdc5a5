# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The servers of a host's routed services, in Traefik's file provider.

The rollout writes ``servers-<service>.yml`` into the directory Traefik's file
provider watches (one rename: Traefik never reads half a file), then asks Traefik's
API until it serves exactly those servers. That is how a new container starts
taking requests and an old one stops, at a moment the rollout chooses, instead of
when a failing healthcheck and a provider throttle have passed.

Runs on the managed host with its Python (3.8+ stdlib only). The API is asked with
http.client rather than ansible.module_utils.urls: it is a local, plain request, and
urls costs every module start ~0.1 s of imports.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from urllib.parse import urlsplit

SERVERS_PREFIX = "servers-"
POLL_SECONDS = 0.05


class TraefikError(Exception):
    """Traefik did not take a servers file within the time allowed."""


def servers_path(directory: str, service: str) -> str:
    return os.path.join(directory, f"{SERVERS_PREFIX}{service}.yml")


def server_urls(containers, port: int) -> list:
    """The containers' URLs, by name: Docker's DNS on the shared network resolves a
    name to the container's current address, also after a restart or a reboot."""
    return sorted(f"http://{c.name}:{port}" for c in containers)


def servers_document(desired, urls: list) -> str:
    """The file provider document of ``desired``'s Traefik service with ``urls``.
    JSON is YAML: the file needs no YAML library on the host."""
    balancer = dict(desired.traefik_balancer)
    balancer["servers"] = [{"url": url} for url in urls]
    document = {"http": {"services": {desired.traefik_service: {"loadBalancer": balancer}}}}
    header = (f"# The containers of service {desired.name}, written by stagecraft's "
              "rollout (stagecraft.platform.release).\n# Do not edit: the next rollout "
              "replaces this file.\n")
    return header + json.dumps(document, indent=2, sort_keys=True) + "\n"


def read_text(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path`` (Traefik reads only
    .yml, .yaml and .toml files), then rename it over ``path``."""
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def served_urls(api: str, service: str, timeout: float = 2.0):
    """The server URLs Traefik's API shows for ``<service>@file``; None when the
    service is not there (yet); raises OSError when the API does not answer."""
    parts = urlsplit(api)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    path = f"{parts.path.rstrip('/')}/api/http/services/{service}@file"
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        data = response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"{api}{path}: {exc}") from exc
    finally:
        connection.close()
    if response.status == 404:
        return None
    if response.status != 200:
        raise OSError(f"{api}{path} answered HTTP {response.status}")
    body = json.loads(data.decode("utf-8"))
    servers = (body.get("loadBalancer") or {}).get("servers") or []
    return sorted(server.get("url", "") for server in servers)


def wait_served(api: str, service: str, urls: list, timeout: float) -> float:
    """Seconds until Traefik serves exactly ``urls`` for ``service`` (an empty list:
    until the service is gone); TraefikError after ``timeout`` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    while True:
        try:
            served = served_urls(api, service)
            if (served or []) == sorted(urls):
                return time.monotonic() - started
            last = "not there" if served is None else f"serves {', '.join(served) or 'nothing'}"
        except (OSError, ValueError) as exc:
            last = f"no answer: {exc}"
        if time.monotonic() >= deadline:
            why = ""
            if last == "not there":
                # Traefik answers but never loaded the file: its log says why (a
                # file provider that could not start, e.g. out of inotify instances).
                why = ("; Traefik answers but has not loaded the servers file: see "
                       "`docker logs stagecraft-traefik` on the host")
            raise TraefikError(
                f"Traefik's API at {api} did not show service {service}@file with "
                f"{', '.join(urls) or 'no server'} within {timeout:g} s ({last}){why}")
        time.sleep(POLL_SECONDS)
