"""Per-host Traefik configuration (DEPLOY_TRAEFIK_GEN; spec/deploy/traefik.md).

Every host runs Traefik: a static ``traefik.yml`` with the entrypoints of
spec/deploy/contracts.md and the file provider (``dynamic/``), and
``dynamic/private.yml``, the routers of the host's routed services on the private
entrypoint. Each router sends to a Traefik service whose servers (the service's
containers) the rollout module writes into ``dynamic/servers-<service>.yml``. Edge
hosts also get ``dynamic/routes.yml``, which routes each public domain to the
private entrypoint of every host that runs the service, and, in local TLS mode,
``dynamic/tls.yml`` with the certificate files under ``certs/``.

Paths in the files are the ones inside the Traefik container, whose config
directory (``<base>/traefik`` on the host) is mounted at ``/etc/traefik``.
Pure: same arguments, same files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from stagecraft.config.schema import Host, ResolvedEnvironment
from stagecraft.render.compose import (
    PRIVATE_ENTRYPOINT,
    RenderError,
    go_duration,
    health_hostname,
    private_rule,
    project_name,
    route_rule,
    router_name,
    services_on,
    to_yaml,
)
from stagecraft.render.state import RenderedFile, RenderInput

EDGE_ROLE = "edge"
CONFIG_DIR = "/etc/traefik"  # where <base>/traefik is mounted in the Traefik container
DYNAMIC_DIR = f"{CONFIG_DIR}/dynamic"
CERTS_DIR = f"{CONFIG_DIR}/certs"
ACME_STORAGE = f"{CONFIG_DIR}/acme/acme.json"

PRIVATE_PORT = 8000
API_ENTRYPOINT = "traefik"
API_PORT = 8080
WEB_ENTRYPOINT = "web"
WEB_PORT = 80
WEBSECURE_ENTRYPOINT = "websecure"
WEBSECURE_PORT = 443
CERT_RESOLVER = "letsencrypt"
REDIRECT_MIDDLEWARE = "redirect-to-https"
# The least time between two configurations Traefik applies from one provider. A
# rollout's servers file is applied at once when the provider has been quiet this
# long; the rollout module asks Traefik's API rather than waiting it out.
PROVIDERS_THROTTLE = "200ms"

STATIC_FILE = "traefik.yml"
ROUTES_FILE = "dynamic/routes.yml"
PRIVATE_ROUTES_FILE = "dynamic/private.yml"
TLS_FILE = "dynamic/tls.yml"


def is_edge(host: Host) -> bool:
    return EDGE_ROLE in host.roles


def cert_name(env: ResolvedEnvironment) -> str:
    """Base name of the local-mode certificate files: ``<project>-<env>``."""
    return project_name(env)


def _header(env: ResolvedEnvironment, host: Host, what: str) -> str:
    return (f"# Traefik {what} of {project_name(env)} on host {host.name}, rendered by "
            "stagecraft.\n# Do not edit: the next deploy replaces this file.\n")


# ---------------------------------------------------------------------- static


def static_config(env: ResolvedEnvironment, host: Host, inp: RenderInput) -> dict[str, Any]:
    """traefik.yml: entrypoints, providers, API and ping, and ACME on edge hosts."""
    entrypoints: dict[str, Any] = {
        # Only the edges reach this entrypoint (over the private network); they
        # set X-Forwarded-* for the public request, so keep those headers.
        PRIVATE_ENTRYPOINT: {"address": f":{PRIVATE_PORT}",
                             "forwardedHeaders": {"insecure": True}},
        API_ENTRYPOINT: {"address": f":{API_PORT}"},
    }
    if is_edge(host):
        entrypoints[WEB_ENTRYPOINT] = {"address": f":{WEB_PORT}"}
        entrypoints[WEBSECURE_ENTRYPOINT] = {"address": f":{WEBSECURE_PORT}"}
    config: dict[str, Any] = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO"},
        "entryPoints": entrypoints,
        "providers": {
            "providersThrottleDuration": PROVIDERS_THROTTLE,
            "file": {"directory": DYNAMIC_DIR, "watch": True},
        },
        # Insecure means "served on the traefik entrypoint", published on 127.0.0.1 only.
        "api": {"insecure": True, "dashboard": True},
        "ping": {"entryPoint": API_ENTRYPOINT},
    }
    if is_edge(host) and _tls_mode(env, inp) == "acme":
        acme: dict[str, Any] = {"storage": ACME_STORAGE,
                                "httpChallenge": {"entryPoint": WEB_ENTRYPOINT}}
        if inp.tls.email:
            acme["email"] = inp.tls.email
        config["certificatesResolvers"] = {CERT_RESOLVER: {"acme": acme}}
    return config


# --------------------------------------------------------------------- dynamic


def routed_services(env: ResolvedEnvironment) -> list[str]:
    """Names of the services with routes, sorted."""
    return sorted(name for name, service in env.services.items() if service.routes)


def backends_name(service: str) -> str:
    """The edge's Traefik service of ``service``: ``<service>-backends``."""
    return f"{service}-backends"


def routes_config(env: ResolvedEnvironment, inp: RenderInput) -> dict[str, Any]:
    """dynamic/routes.yml of an edge host: routers per route and entrypoint, and
    one load balancer per service over the private entrypoints of its hosts."""
    mode = _tls_mode(env, inp)
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for name in routed_services(env):
        service = env.services[name]
        backends = backends_name(name)
        for index, route in enumerate(service.routes):
            rule = route_rule(env.route_host(route), route.path)
            web: dict[str, Any] = {"rule": rule, "entryPoints": [WEB_ENTRYPOINT],
                                   "service": backends}
            if mode == "acme":
                web["middlewares"] = [REDIRECT_MIDDLEWARE]
            routers[f"{name}-{index}-{WEB_ENTRYPOINT}"] = web
            if mode != "off":
                tls: dict[str, Any] = {"certResolver": CERT_RESOLVER} if mode == "acme" else {}
                routers[f"{name}-{index}-{WEBSECURE_ENTRYPOINT}"] = {
                    "rule": rule, "entryPoints": [WEBSECURE_ENTRYPOINT],
                    "service": backends, "tls": tls}
        services[backends] = {"loadBalancer": _load_balancer(env, name, inp)}
    http: dict[str, Any] = {}
    if routers:
        http["routers"] = routers
        http["services"] = services
    if mode == "acme" and routers:
        http["middlewares"] = {REDIRECT_MIDDLEWARE: {
            "redirectScheme": {"scheme": "https", "permanent": True}}}
    return {"http": http} if http else {}


def private_routes_config(env: ResolvedEnvironment, host: Host) -> dict[str, Any]:
    """dynamic/private.yml: a router on the private entrypoint for each routed service
    of ``host``, to the Traefik service the rollout module fills with its containers."""
    routers = {}
    for name in services_on(env, host):
        if env.services[name].routes:
            router = router_name(env, name)
            routers[router] = {"rule": private_rule(env, name),
                               "entryPoints": [PRIVATE_ENTRYPOINT], "service": router}
    return {"http": {"routers": routers}} if routers else {}


def _load_balancer(env: ResolvedEnvironment, name: str, inp: RenderInput) -> dict[str, Any]:
    service = env.services[name]
    hosts = env.hosts_for_service(name)
    if not hosts:
        raise RenderError(f"service {name!r} has routes but runs on no host of "
                          f"environment {env.name!r}",
                          hint=f"give a host one of the roles in services.{name}.on")
    servers = []
    for host in hosts:
        address = inp.private_ips.get(host.name)
        if not address:
            raise RenderError(
                f"no private address for host {host.name!r}, which runs service {name!r} "
                "behind the edge",
                hint="create the hosts first (`stagecraft infra up`) so their addresses "
                     "are known")
        servers.append({"url": f"http://{_url_host(address)}:{PRIVATE_PORT}"})
    balancer: dict[str, Any] = {"servers": servers, "passHostHeader": True}
    check = service.healthcheck
    if check is not None and check.path is not None:
        balancer["healthCheck"] = {
            "path": check.path,
            "hostname": health_hostname(env, name),
            "interval": go_duration(check.interval),
            "timeout": go_duration(check.timeout),
        }
    return balancer


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _tls_mode(env: ResolvedEnvironment, inp: RenderInput) -> str:
    """The TLS mode of the release, which must be the environment's when it names one
    (without one, the cloud's default decided it)."""
    if env.tls.mode is not None and inp.tls.mode != env.tls.mode:
        raise RenderError(
            f"TLS mode {inp.tls.mode!r} of the release does not match mode "
            f"{env.tls.mode!r} of environment {env.name!r}",
            hint="build the render input's TLS settings from the environment")
    return inp.tls.mode


def tls_config(env: ResolvedEnvironment) -> dict[str, Any]:
    """dynamic/tls.yml (local mode): the certificate, also the default one, so a
    request without SNI gets it too."""
    files = {"certFile": f"{CERTS_DIR}/{cert_name(env)}.crt",
             "keyFile": f"{CERTS_DIR}/{cert_name(env)}.key"}
    return {"tls": {"certificates": [dict(files)],
                    "stores": {"default": {"defaultCertificate": dict(files)}}}}


# ----------------------------------------------------------------------- files


def render_traefik(env: ResolvedEnvironment, host: Host,
                   inp: RenderInput) -> dict[str, RenderedFile]:
    """The files of ``<base>/traefik/`` on ``host``, by path relative to it.

    Every host: traefik.yml, dynamic/private.yml (empty without routed services) and
    dynamic/routes.yml (empty off the edge, so a host that stops being an edge loses
    its routes). Edge hosts in local TLS
    mode also: dynamic/tls.yml and certs/<project>-<env>.crt|.key (key 0600).
    """
    mode = _tls_mode(env, inp)
    files = {STATIC_FILE: RenderedFile(to_yaml(static_config(env, host, inp),
                                               _header(env, host, "static configuration")))}
    routes = routes_config(env, inp) if is_edge(host) else {}
    files[ROUTES_FILE] = RenderedFile(to_yaml(routes, _header(env, host, "routes")))
    files[PRIVATE_ROUTES_FILE] = RenderedFile(
        to_yaml(private_routes_config(env, host), _header(env, host, "private routes")))
    if is_edge(host) and mode == "local":
        if not inp.tls.certificate or not inp.tls.key:
            raise RenderError(
                f"TLS mode 'local' of environment {env.name!r} needs a certificate and "
                "key for the edge, and the release has none",
                hint="let stagecraft make the local certificate, or set tls.mode")
        files[TLS_FILE] = RenderedFile(to_yaml(tls_config(env), _header(env, host, "TLS")))
        files[f"certs/{cert_name(env)}.crt"] = RenderedFile(_pem(inp.tls.certificate))
        files[f"certs/{cert_name(env)}.key"] = RenderedFile(_pem(inp.tls.key), mode=0o600,
                                                            secret=True)
    return dict(sorted(files.items()))


def _pem(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def traefik_hash(files: Mapping[str, RenderedFile], image: str,
                 private_address: str = "") -> str:
    """Hash of the Traefik image, the address its private entrypoint is published on
    (the host's tailnet address once it joined one) and every Traefik file (path, mode,
    content): it changes exactly when the host's Traefik must be updated."""
    digest = hashlib.sha256()
    digest.update(f"image\0{image}\0".encode())
    if private_address:
        digest.update(f"private\0{private_address}\0".encode())
    for path in sorted(files):
        file = files[path]
        digest.update(f"{path}\0{file.mode:o}\0{len(file.content)}\0".encode())
        digest.update(file.content.encode())
    return digest.hexdigest()[:16]
