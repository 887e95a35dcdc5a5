"""Headscale for a local-cloud mesh: its configuration, and the CLI calls that make a
user and a pre-auth key in a running ``stagecraft/headscale`` container.

The container itself (its name, address, volume, when it is replaced) is the local
cloud's business; this module holds what does not depend on where it runs. The
choices below were made by experiment with tailscale v1.102.5 and Headscale v0.29.3
(spec/providers/network-mesh-binaries.md tells the whole story):

- **TLS, from the environment's CA.** A plain-http ``server_url`` is enough for the
  control protocol, and hosts on one Docker network then reach each other directly
  over UDP; but tailscale clients speak DERP only over TLS, so the embedded DERP relay
  would be unusable ("tls: first record does not look like a TLS handshake"): no relay
  when a direct path fails. Headscale therefore serves TLS itself with a
  certificate from stagecraft.infra.tls, which hosts already trust (the bootstrap role
  installs the environment's CA in their system store).
- **An IP literal in server_url.** Given a name, tailscaled's control client, when a
  dial fails (it tries port 80 too) and the name resolved to a private address, asks
  Tailscale's public DERP servers to resolve it ("bootstrap DNS"): traffic that leaves
  the fleet. With an address nothing is resolved; the certificate names the address.
- **Nothing outside the fleet.** No public DERP map (``derp.urls`` is empty: only the
  embedded region 999), no update check, no log upload; hosts keep their own DNS
  (``override_local_dns: false``), MagicDNS names live under ``base_domain``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from stagecraft import execs
from stagecraft.errors import CommandFailed, ProviderError
from stagecraft.log import add_secrets
from stagecraft.providers.cloud.local.dockercli import docker_binary, failure

#: Headscale's one TCP port: its API, the Noise control protocol and DERP.
HEADSCALE_PORT = 8080
#: The embedded STUN server (UDP), which tells nodes their address as seen from it.
STUN_PORT = 3478
#: Paths inside the image (service_images/headscale/Dockerfile).
CONFIG_PATH = "/etc/headscale/config.yaml"
TLS_CERT_PATH = "/etc/headscale/tls/headscale.crt"
TLS_KEY_PATH = "/etc/headscale/tls/headscale.key"
DATA_DIR = "/var/lib/headscale"
SOCKET_PATH = "/var/run/headscale/headscale.sock"
#: Tailscale's own address ranges, which tailscale clients treat as the tailnet's.
IPV4_PREFIX = "100.64.0.0/10"
IPV6_PREFIX = "fd7a:115c:a1e0::/48"
#: The embedded DERP region; 900-999 are the ids Tailscale leaves to custom servers.
DERP_REGION_ID = 999
DERP_REGION_CODE = "stagecraft"
DEFAULT_BASE_DOMAIN = "mesh.internal"

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+$")


@dataclass(frozen=True)
class HeadscaleSettings:
    """What the local cloud decides about one Headscale; the rest is fixed."""

    #: Where nodes reach it, e.g. ``https://10.200.3.129:8080`` (see :func:`server_url`).
    server_url: str
    #: MagicDNS names are ``<host>.<base_domain>``: a domain of its own (not the server's).
    base_domain: str = DEFAULT_BASE_DOMAIN
    #: Serve TLS from TLS_CERT_PATH/TLS_KEY_PATH (needed for DERP; see the module doc).
    tls: bool = True
    #: Its address on the fleet network, put in the DERP map so nodes dial it directly.
    derp_ipv4: str | None = None
    log_level: str = "info"

    def __post_init__(self) -> None:
        parts = urlsplit(self.server_url)
        scheme = "https" if self.tls else "http"
        if parts.scheme != scheme or not parts.hostname:
            raise ValueError(f"server_url must be a {scheme}:// URL with a host, not "
                             f"{self.server_url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"server_url must have no path, not {self.server_url!r}")
        if not _DOMAIN.match(self.base_domain):
            raise ValueError(f"base_domain must be a domain name without a trailing dot, "
                             f"not {self.base_domain!r}")
        host = parts.hostname.lower()
        if host == self.base_domain or host.endswith("." + self.base_domain):
            # Headscale refuses it too: MagicDNS would answer for the server's own name.
            raise ValueError(f"base_domain {self.base_domain!r} must not contain the server "
                             f"{host!r}")
        if self.derp_ipv4 is not None:
            try:
                ipaddress.IPv4Address(self.derp_ipv4)
            except ValueError as exc:
                raise ValueError(f"derp_ipv4 must be an IPv4 address, not "
                                 f"{self.derp_ipv4!r}") from exc


def server_url(address: str, *, tls: bool = True, port: int = HEADSCALE_PORT) -> str:
    """``https://<address>:8080``: an IP literal, so that nodes resolve nothing."""
    host = f"[{address}]" if ":" in address else address
    return f"{'https' if tls else 'http'}://{host}:{port}"


def config_data(settings: HeadscaleSettings) -> dict[str, Any]:
    """Headscale v0.29's configuration as data (keys as in its config-example.yaml)."""
    data: dict[str, Any] = {
        "server_url": settings.server_url,
        "listen_addr": f"0.0.0.0:{HEADSCALE_PORT}",
        # Metrics and the gRPC API stay inside the container; the CLI uses the socket.
        "metrics_listen_addr": "127.0.0.1:9090",
        "grpc_listen_addr": "127.0.0.1:50443",
        "grpc_allow_insecure": False,
        "noise": {"private_key_path": f"{DATA_DIR}/noise_private.key"},
        "prefixes": {"v4": IPV4_PREFIX, "v6": IPV6_PREFIX, "allocation": "sequential"},
        "derp": {
            "server": {
                "enabled": True,
                "region_id": DERP_REGION_ID,
                "region_code": DERP_REGION_CODE,
                "region_name": "stagecraft (Headscale's embedded DERP)",
                "verify_clients": True,
                "stun_listen_addr": f"0.0.0.0:{STUN_PORT}",
                "private_key_path": f"{DATA_DIR}/derp_server_private.key",
                "automatically_add_embedded_derp_region": True,
            },
            # No public DERP map: nodes use only the embedded relay, and nothing is
            # fetched from outside the fleet.
            "urls": [],
            "paths": [],
            "auto_update_enabled": False,
            "update_frequency": "24h",
        },
        "disable_check_updates": True,
        "node": {"expiry": 0},
        "database": {
            "type": "sqlite",
            "sqlite": {"path": f"{DATA_DIR}/db.sqlite", "write_ahead_log": True},
        },
        "log": {"level": settings.log_level, "format": "text"},
        # No policy file: every node of the tailnet may reach every other (the firewall
        # role decides what each host accepts).
        "policy": {"mode": "file", "path": ""},
        "dns": {
            "magic_dns": True,
            "base_domain": settings.base_domain,
            # Hosts keep their resolver (Docker's, or the droplet's); tailscale adds the
            # tailnet's names only where `tailscale up --accept-dns` asks for them.
            "override_local_dns": False,
            "nameservers": {"global": [], "split": {}},
            "search_domains": [],
            "extra_records": [],
        },
        "unix_socket": SOCKET_PATH,
        "unix_socket_permission": "0770",
        "logtail": {"enabled": False},
        "taildrop": {"enabled": False},
    }
    if settings.derp_ipv4 is not None:
        data["derp"]["server"]["ipv4"] = settings.derp_ipv4
    if settings.tls:
        data["tls_cert_path"] = TLS_CERT_PATH
        data["tls_key_path"] = TLS_KEY_PATH
    return data


def render_config(settings: HeadscaleSettings) -> str:
    """The text of /etc/headscale/config.yaml for ``settings``."""
    header = ("# Headscale configuration of a stagecraft local-cloud mesh, written by\n"
              "# stagecraft.providers.cloud.local.headscale; edits are overwritten.\n")
    return header + yaml.safe_dump(config_data(settings), sort_keys=False,
                                   default_flow_style=False)


# ------------------------------------------------------------------ the CLI


def headscale_json(container: str, *args: str, what: str, secret_output: bool = False,
                   timeout: float = 60) -> Any:
    """Run ``headscale ARGS -o json`` in ``container`` and parse what it prints.

    ``secret_output``: the output holds a secret (a key), so it is kept out of the
    debug log; register the secret with stagecraft.log.add_secrets once parsed.
    """
    argv = [docker_binary(), "exec", container, "headscale", *args, "--output", "json"]
    on_line = (lambda _stream, _line: None) if secret_output else None
    try:
        proc = execs.run(argv, timeout=timeout, check=False, on_line=on_line)
    except CommandFailed as exc:  # timed out
        raise CommandFailed(f"cannot {what}: `headscale {args[0]}` did not finish within "
                            f"{timeout:g} s", argv=exc.argv, returncode=None,
                            hint=f"see `docker logs {container}`") from exc
    if proc.returncode != 0:
        raise failure(what, list(proc.argv), proc.returncode, proc.stderr or proc.stdout,
                      f"see `docker logs {container}`")
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise ProviderError(f"cannot {what}: headscale printed no JSON",
                            hint=f"run `docker exec {container} headscale {' '.join(args)}` "
                            "to see its output") from exc


def ensure_user(container: str, name: str) -> int:
    """The numeric id of Headscale user ``name``, made if missing (Headscale ≥ 0.28 takes
    user ids, not names, in ``preauthkeys create --user``)."""
    users = headscale_json(container, "users", "list", what="list Headscale's users")
    for user in users or []:
        if user.get("name") == name:
            return int(user["id"])
    made = headscale_json(container, "users", "create", name,
                          what=f"create the Headscale user {name}")
    return int(made["id"])


def create_auth_key(container: str, user_id: int, *, reusable: bool = True,
                    expiration: str = "1h", tags: tuple[str, ...] = ()) -> str:
    """A new pre-auth key of user ``user_id`` (``hskey-auth-...``), registered as a secret
    so no log shows it. ``expiration`` is Headscale's duration ("30m", "24h")."""
    args = ["preauthkeys", "create", "--user", str(user_id), "--expiration", expiration]
    if reusable:
        args.append("--reusable")
    if tags:
        args += ["--tags", ",".join(tags)]
    made = headscale_json(container, *args, what=f"create a pre-auth key for Headscale user "
                          f"{user_id}", secret_output=True)
    key = str(made.get("key") or "")
    if not key:
        raise ProviderError("Headscale made a pre-auth key but printed none",
                            hint=f"run `docker exec {container} headscale preauthkeys list`")
    add_secrets(key)
    return key


__all__ = [
    "CONFIG_PATH", "DATA_DIR", "DEFAULT_BASE_DOMAIN", "DERP_REGION_CODE", "DERP_REGION_ID",
    "HEADSCALE_PORT", "IPV4_PREFIX", "IPV6_PREFIX", "SOCKET_PATH", "STUN_PORT",
    "TLS_CERT_PATH", "TLS_KEY_PATH",
    "HeadscaleSettings", "config_data", "create_auth_key", "ensure_user", "headscale_json",
    "render_config", "server_url",
]
