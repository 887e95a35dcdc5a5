"""The Compose project of `stagecraft dev`'s infra services: pure rendering.

Each infra service runs as a deploy would run it (its image or build, command,
env, secrets in an env file, healthcheck, volumes), with its port published on
127.0.0.1 at the same number. Named volumes are ``<project>-dev-<volume>``: they
outlive `dev down`, as a database's data should.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.dev.plan import LOOPBACK, DevPlan, env_text
from stagecraft.errors import PlanError
from stagecraft.render.compose import env_file_of, healthcheck_of

_MOUNT = re.compile(r"^(?P<source>[^:]+):(?P<target>/[^:]*)(?::(?P<mode>ro|rw))?$")


def infra_compose(env: ResolvedEnvironment, plan: DevPlan, project_dir: Path,
                  env_dir: Path, secrets: Mapping[str, str]
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """The compose document and the env files it names ({path: content}; they hold
    secrets: written 0600, never shown)."""
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    env_files: dict[str, str] = {}
    for item in plan.infra:
        name = item.service
        service = env.services[name]
        definition: dict[str, Any] = {}
        if service.image is not None:
            definition["image"] = service.image
        else:
            source = env.services[service.from_] if service.from_ else service
            if source.build is None:
                raise PlanError(f"infra service {name!r} has no image and no build",
                                hint=f"give services.{name} an image or a build")
            build: dict[str, Any] = {"context": str((project_dir / source.build.context).resolve())}
            if source.build.dockerfile:
                build["dockerfile"] = source.build.dockerfile
            if source.build.args:
                build["args"] = {k: str(v) for k, v in source.build.args.items()}
            if source.build.target:
                build["target"] = source.build.target
            definition["build"] = build
            definition["image"] = f"{plan.compose_project}-{service.from_ or name}:dev"
        if service.command is not None:
            definition["command"] = service.command
        if service.env:
            definition["environment"] = {k: env_text(v) for k, v in service.env.items()}
        content = env_file_of(env, name, secrets)
        if content is not None:
            path = str(env_dir / f"{name}.env")
            env_files[path] = content
            definition["env_file"] = [path]
        if item.port is not None:
            definition["ports"] = [f"{LOOPBACK}:{item.port}:{item.port}"]
        if service.healthcheck is not None:
            definition["healthcheck"] = healthcheck_of(name, service, service.healthcheck)
        mounts = []
        for mount in service.volumes:
            match = _MOUNT.match(mount)
            if match is None:
                raise PlanError(f"services.{name}.volumes: {mount!r} is not a mount",
                                hint="write 'volume:/path' or '/host/path:/path', with an "
                                     "optional ':ro'")
            source_name, target, mode = match.group("source", "target", "mode")
            suffix = f":{mode}" if mode else ""
            if source_name.startswith(("/", ".")):
                path = (project_dir / source_name).resolve() if source_name.startswith(".") \
                    else Path(source_name)
                mounts.append(f"{path}:{target}{suffix}")
            else:
                volumes[source_name] = {"name": f"{plan.compose_project}-{source_name}"}
                mounts.append(f"{source_name}:{target}{suffix}")
        if mounts:
            definition["volumes"] = mounts
        definition["stop_grace_period"] = service.stop_grace
        definition["labels"] = {"org.stagecraft.dev": plan.project}
        services[name] = definition
    document: dict[str, Any] = {"name": plan.compose_project, "services": services}
    if volumes:
        document["volumes"] = volumes
    return document, env_files

