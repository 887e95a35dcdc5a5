"""The floors of a deploy: what the hosts could do with the same compose files and
nothing in between, one SSH command per host, all hosts in parallel.

- ``up``: `docker compose up -d --wait`, which recreates the containers (the old
  ones stop before the new ones start: not zero-downtime) and waits for health;
- ``roll``: the zero-downtime move (bench/zero_downtime_floor.sh): new containers
  beside the old ones, health, the old ones out of Traefik through its file
  provider (confirmed on its API), the drain, then stop.

It runs under its own compose project, ``<project>-<env>-floor``, so it never
touches stagecraft's containers, from copies of the release dirs whose
``traefik.*`` labels are stripped, so Traefik never routes to it. SSH options
and control sockets are stagecraft's own (RemoteHost.ssh_argv), as a deploy
would use them.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from bench.fleet import Fleet

ROLL_SCRIPT = Path(__file__).with_name("zero_downtime_floor.sh")


class Floor:
    def __init__(self, fleet: Fleet, env_name: str = "local") -> None:
        from stagecraft.config.loader import load_config
        from stagecraft.hosts.fleet import Fleet as EnvironmentFleet
        from stagecraft.hosts.lock import base_dir

        env = load_config(fleet.dir / "stagecraft.yml").environment(env_name)
        self.hosts = list(EnvironmentFleet.load(env, fleet.dir).remotes().values())
        self.root = base_dir(env.project.name, env.name)
        self.project = f"{env.project.name}-{env.name}-floor"
        # The zero-downtime floor's containers: a compose project of their own.
        self.roll_project = f"{env.project.name}-{env.name}-rollfloor"
        self.prepared: set[str] = set()

    def _parallel(self, command_of) -> dict[str, str]:
        from stagecraft.hosts.remote import in_parallel

        return in_parallel(self.hosts, lambda h: h.run(command_of(h), timeout=300).stdout)

    def prepare(self, tag: str, release_dir: str = "current") -> None:
        """Copy ``release_dir`` (a release id or "current") to floor/<tag>/ on every
        host, with the Traefik labels removed (not timed)."""
        def copy(host) -> str:
            text = host.run(f"cat {self.root}/{release_dir}/compose.yml").stdout
            document = yaml.safe_load(text)
            for service in document.get("services", {}).values():
                labels = service.get("labels") or {}
                service["labels"] = {k: v for k, v in labels.items() if not k.startswith("traefik.")}
            floor_dir = f"{self.root}/floor/{tag}"
            host.run(f"rm -rf {floor_dir} && mkdir -p {floor_dir} && "
                     f"if [ -d {self.root}/{release_dir}/env ]; then cp -a {self.root}/{release_dir}/env {floor_dir}/; fi && "
                     f"cat > {floor_dir}/compose.yml", input=yaml.safe_dump(document, sort_keys=True))
            return ""

        from stagecraft.hosts.remote import in_parallel
        in_parallel(self.hosts, copy)
        self.prepared.add(tag)

    def up(self, tag: str) -> float:
        """Seconds for `docker compose up -d --wait` of floor/<tag> on every host at once."""
        started = time.perf_counter()
        self._parallel(lambda h: f"docker compose -p {self.project} "
                                 f"-f {self.root}/floor/{tag}/compose.yml up -d --wait --quiet-pull 2>&1")
        return time.perf_counter() - started

    def roll(self, tag: str, service: str = "web", replicas: int = 2, port: int = 8080,
             drain: float = 1.0, stop_grace: int = 5) -> float:
        """Seconds for the zero-downtime move to floor/<tag> on every host at once."""
        script = ROLL_SCRIPT.read_text()
        args = " ".join([self.roll_project, f"{self.root}/floor/{tag}/compose.yml", service,
                         str(replicas), str(port), f"{self.root}/traefik/dynamic", f"{drain:g}",
                         str(stop_grace)])
        started = time.perf_counter()
        from stagecraft.hosts.remote import in_parallel

        in_parallel(self.hosts, lambda h: h.run(f"bash -s -- {args}", input=script,
                                                timeout=300).stdout)
        return time.perf_counter() - started

    def down(self) -> None:
        """Remove the floor project's containers and files (best effort)."""
        from stagecraft.hosts.remote import in_parallel

        def clean(host) -> str:
            host.run(f"docker compose -p {self.project} down --timeout 2 2>&1; "
                     f"docker compose -p {self.roll_project} down --timeout 2 2>&1; "
                     f"rm -rf {self.root}/floor {self.root}/traefik/dynamic/floor-*.yml",
                     check=False, timeout=300)
            return ""
        in_parallel(self.hosts, clean)

