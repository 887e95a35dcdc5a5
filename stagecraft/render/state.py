"""Desired state of a host: what render produces, plan diffs and the ledger keeps.

Plain frozen data with a JSON form, so the ledger can store it and the planner
can compare a release's desired state with the last one each host completed.
See spec/deploy/contracts.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Strategy = Literal["rolling", "recreate", "stateful"]
STRATEGIES: tuple[str, ...] = ("rolling", "recreate", "stateful")


@dataclass(frozen=True)
class ServiceState:
    """One service as a host should run it."""

    name: str
    image: str
    config_hash: str
    strategy: Strategy
    replicas: int

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "config_hash": self.config_hash,
                "strategy": self.strategy, "replicas": self.replicas}

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ServiceState:
        strategy = data["strategy"]
        if strategy not in STRATEGIES:
            raise ValueError(f"service {name}: unknown strategy {strategy!r}")
        return cls(name=name, image=str(data["image"]), config_hash=str(data["config_hash"]),
                   strategy=strategy, replicas=int(data["replicas"]))


@dataclass(frozen=True)
class HostState:
    """Everything a host should run: its services and its Traefik configuration."""

    services: Mapping[str, ServiceState] = field(default_factory=dict)
    traefik_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"services": {name: s.to_dict() for name, s in sorted(self.services.items())},
                "traefik_hash": self.traefik_hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostState:
        services = {name: ServiceState.from_dict(name, value)
                    for name, value in dict(data.get("services") or {}).items()}
        return cls(services=services, traefik_hash=str(data.get("traefik_hash", "")))


@dataclass(frozen=True)
class RenderedFile:
    """One file for a host, relative to the release dir (or the Traefik dir)."""

    content: str
    mode: int = 0o644
    secret: bool = False  # holds secret values: 0600, never logged, never in the ledger


@dataclass(frozen=True)
class TlsSettings:
    """How the edge gets certificates. ``certificate``/``key`` are PEM (local mode)."""

    mode: Literal["acme", "local", "off"]
    email: str | None = None
    certificate: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class RenderInput:
    """What rendering needs beyond the environment: facts of this release and fleet."""

    release_id: str
    images: Mapping[str, str]  # service -> image reference hosts pull (with digest when known)
    private_ips: Mapping[str, str]  # host name -> address on the private network
    secrets: Mapping[str, str] = field(default_factory=dict)  # resolved values by name
    tls: TlsSettings = field(default_factory=lambda: TlsSettings(mode="off"))
    traefik_image: str = "traefik:v3.6"


@dataclass(frozen=True)
class HostRender:
    """The files of one host for one release, and its desired state."""

    host: str
    release_files: Mapping[str, RenderedFile]  # relative to <base>/releases/<id>/
    traefik_files: Mapping[str, RenderedFile]  # relative to <base>/traefik/
    state: HostState
