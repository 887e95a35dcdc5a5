"""`secrets sync --to hosts`: compare the env files the hosts run with the provider's
values (names out, never values), and roll the new values out as a release with the
same images.

Releases are immutable, so new values on the hosts are a new release: a deploy with
--skip-build, whose rollout rolls the services whose env file changed and whose
record the ledger keeps.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import CommandFailed

Say = Callable[[str], None]


def expected_env_files(env: ResolvedEnvironment,
                       values: Mapping[str, str]) -> dict[str, dict[str, dict[str, str]]]:
    """host -> service -> {name: value}: what each env file would hold with ``values``."""
    from stagecraft.render.compose import env_file_of, services_on
    from stagecraft.providers.secrets import parse_dotenv

    wanted: dict[str, dict[str, dict[str, str]]] = {}
    for host in env.hosts:
        for service in services_on(env, host):
            text = env_file_of(env, service, values)
            if text is not None:
                wanted.setdefault(host.name, {})[service] = parse_dotenv(text, f"env/{service}.env")
    return wanted


def differing_names(wanted: Mapping[str, Mapping[str, str]],
                    found: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """service -> names whose value differs (or that one side lacks); only services
    with a difference. Pure: compares in memory, returns names only."""
    out: dict[str, list[str]] = {}
    for service in sorted(set(wanted) | set(found)):
        want, have = wanted.get(service, {}), found.get(service, {})
        names = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
        if names:
            out[service] = names
    return out


def read_env_files(host, project: str, environment: str) -> dict[str, dict[str, str]]:
    """service -> parsed env/<service>.env of the release the host runs ({} when none).

    The files travel base64-encoded and their lines never reach the debug log: the
    host's values can be older than the provider's, so the redactor may not know them.
    """
    from stagecraft.hosts.lock import base_dir
    from stagecraft.hosts.remote import quote
    from stagecraft.providers.secrets import parse_dotenv

    directory = f"{base_dir(project, environment)}/current/env"
    command = (f"cd {quote(directory)} 2>/dev/null || exit 0; "
               "for f in *.env; do [ -f \"$f\" ] || continue; "
               "printf '%s ' \"$f\"; base64 -w0 \"$f\"; echo; done")
    done = host.run(command, check=False, what="reading the env files",
                    on_line=lambda _stream, _line: None)
    if done.returncode != 0:
        raise CommandFailed(f"host {host.name}: reading the env files of the current release "
                            f"failed (exit {done.returncode})", returncode=done.returncode,
                            hint=f"check that host {host.name} is up: stagecraft status")
    files: dict[str, dict[str, str]] = {}
    for line in done.stdout.splitlines():
        name, _, encoded = line.partition(" ")
        if not name.endswith(".env"):
            continue
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CommandFailed(f"host {host.name}: env/{name} could not be read back",
                                hint="run the sync again") from None
        files[name.removesuffix(".env")] = parse_dotenv(text, f"{host.name}:env/{name}")
    return files


def plan_hosts(fleet, values: Mapping[str, str]) -> dict[str, dict[str, list[str]]]:
    """host -> service -> names that differ between the hosts' env files and ``values``."""
    from stagecraft.hosts.remote import in_parallel

    env = fleet.env
    wanted = expected_env_files(env, values)
    remotes = fleet.remotes([h.name for h in env.hosts])
    found = in_parallel(remotes.values(),
                        lambda host: read_env_files(host, env.project.name, env.name))
    plan = {}
    for host in env.hosts:
        differ = differing_names(wanted.get(host.name, {}), found.get(host.name, {}))
        if differ:
            plan[host.name] = differ
    return plan


def sync_hosts(fleet, plan: Mapping[str, Any], options, *, say: Say, on_event=None):
    """A new release with the last release's images and the provider's values: the
    rollout rolls the services whose env file changed, the ledger records it."""
    from stagecraft.deploy.release import deploy

    say(f"secrets sync: a new release of {fleet.env.name} with the same images "
        f"({sum(len(s) for s in plan.values())} service(s) on {len(plan)} host(s) get new values)")
    return deploy(fleet, options, say=say, on_event=on_event)
