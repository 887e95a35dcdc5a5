"""Traefik's configuration for `stagecraft dev`: pure rendering.

The routers use the rule a deploy renders for the same route
(``render.compose.route_rule`` of ``env.route_host``), so a route that works in dev
matches the same requests in production. Entrypoints listen on 127.0.0.1 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stagecraft.dev.plan import LOOPBACK, DevPlan
from stagecraft.render.compose import route_rule

WEB, WEBSECURE, API = "web", "websecure", "traefik"
STATIC_FILE = "traefik.yml"
DYNAMIC_DIR = "dynamic"
ROUTES_FILE = f"{DYNAMIC_DIR}/routes.yml"


def static_config(plan: DevPlan, base: Path) -> dict[str, Any]:
    """traefik.yml: HTTPS and HTTP (redirecting) entrypoints, ping and the API on a
    third port, the file provider watching ``<base>/dynamic``."""
    return {
        "entryPoints": {
            WEBSECURE: {"address": f"{LOOPBACK}:{plan.https_port}"},
            WEB: {"address": f"{LOOPBACK}:{plan.http_port}",
                  "http": {"redirections": {"entryPoint": {"to": WEBSECURE,
                                                           "scheme": "https"}}}},
            API: {"address": f"{LOOPBACK}:{plan.api_port}"},
        },
        "providers": {"file": {"directory": str(base / DYNAMIC_DIR), "watch": True}},
        "api": {"insecure": True, "dashboard": False},
        "ping": {"entryPoint": API},
        # Errors only: its start-up notices would bury the dev servers' output.
        "log": {"level": "ERROR", "noColor": True},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }


def routes_config(plan: DevPlan, cert_file: Path, key_file: Path) -> dict[str, Any]:
    """dynamic/routes.yml: one HTTPS router per route, one service per target, and
    the certificate as the default one (a request without SNI gets it too)."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for route in plan.routes:
        index = counts.get(route.service, 0)
        counts[route.service] = index + 1
        backend = f"{route.service}-dev"
        routers[f"{route.service}-{index}"] = {
            "rule": route_rule(route.host, route.path), "entryPoints": [WEBSECURE],
            "service": backend, "tls": {}}
        services[backend] = {"loadBalancer": {"servers": [{"url": route.target}],
                                              "passHostHeader": True}}
    certificate = {"certFile": str(cert_file), "keyFile": str(key_file)}
    document: dict[str, Any] = {"tls": {"certificates": [dict(certificate)],
                                        "stores": {"default": {
                                            "defaultCertificate": dict(certificate)}}}}
    if routers:
        document["http"] = {"routers": routers, "services": services}
    return document
