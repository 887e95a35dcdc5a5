"""What one Ansible run should do: a typed, immutable request.

A ``RunRequest`` is the only input of :func:`stagecraft.ansible.bundle.prepare`.
It is plain data (no I/O happens here), validated when built, so a bad request
fails in the caller's code rather than halfway through writing a bundle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stagecraft.providers.cloud.base import SshAccess

# Environment variables every run gets from os.environ: without them
# ansible-playbook cannot start (PATH), find ~/.ansible (HOME) or decode text.
BASE_ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
)

# Run ids become directory names and ansible-runner idents.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INVENTORY_GROUP_KEYS = frozenset({"hosts", "vars", "children"})


SECRET_KEYS = frozenset({"content", "password", "value"})


def secret_strings(secret_extravars: Mapping[str, Any]) -> list[str]:
    """The strings of ``secret_extravars`` to mask: top-level strings, every string
    under a ``content``/``password``/``value`` key at any depth, and every string
    in a top-level ``*_secret_env`` mapping."""
    found: list[str] = []

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, str):
            if secret and value:
                found.append(value)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, secret or key in SECRET_KEYS)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, secret)

    for key, value in secret_extravars.items():
        # A mapping of environment variables for a command (``*_secret_env``): every
        # value is a secret.
        walk(value, isinstance(value, str) or key.endswith("_secret_env"))
    return found


@dataclass(frozen=True)
class SshSettings:
    """How Ansible reaches hosts over SSH. Host key checking is always on."""

    private_key_file: Path | None = None
    """Private key passed to ssh (``-i``); None uses ssh's own defaults/agent."""
    known_hosts_file: Path | None = None
    """The only known_hosts file ssh trusts; None keeps ssh's default file."""
    user: str | None = None
    """Remote user; None leaves it to the inventory or ssh config."""

    def __post_init__(self) -> None:
        for name in ("private_key_file", "known_hosts_file"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser().absolute())

    @classmethod
    def of(cls, access: SshAccess) -> SshSettings:
        """The settings for hosts a cloud gives ``access`` to."""
        return cls(private_key_file=access.private_key, known_hosts_file=access.known_hosts,
                   user=access.user)


def _frozen_json(value: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """A deep, read-only copy of a JSON-shaped mapping (and proof it is JSON)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(value).__name__}")
    try:
        copied = json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from None
    return MappingProxyType(copied)


def _check_inventory(inventory: Mapping[str, Any]) -> None:
    """Ansible's YAML/JSON inventory shape: {group: {hosts, vars, children}}."""
    if "_meta" in inventory:
        raise ValueError(
            "inventory is in the dynamic-inventory script shape (_meta); "
            "give the YAML inventory shape: {'all': {'hosts': {name: vars}, 'children': ...}}"
        )

    def check_group(name: str, group: Any, depth: int) -> None:
        if depth > 32:
            raise ValueError("inventory groups nest too deeply")
        if group is None:
            return
        if not isinstance(group, Mapping):
            raise TypeError(f"inventory group {name!r} must be a mapping")
        unknown = set(group) - _INVENTORY_GROUP_KEYS
        if unknown:
            raise ValueError(
                f"inventory group {name!r} has unknown keys {sorted(unknown)} "
                f"(allowed: hosts, vars, children)"
            )
        hosts = group.get("hosts") or {}
        if not isinstance(hosts, Mapping):
            raise TypeError(f"inventory group {name!r}: hosts must map host name to its vars")
        for host, host_vars in hosts.items():
            if host_vars is not None and not isinstance(host_vars, Mapping):
                raise TypeError(f"inventory host {host!r}: vars must be a mapping")
        children = group.get("children") or {}
        if not isinstance(children, Mapping):
            raise TypeError(f"inventory group {name!r}: children must be a mapping")
        for child, child_group in children.items():
            check_group(child, child_group, depth + 1)

    for name, group in inventory.items():
        check_group(name, group, 0)


def inventory_hosts(inventory: Mapping[str, Any]) -> tuple[str, ...]:
    """Every host named in an inventory, in first-seen order."""
    seen: dict[str, None] = {}

    def walk(group: Any) -> None:
        if not isinstance(group, Mapping):
            return
        for host in (group.get("hosts") or {}):
            seen.setdefault(str(host), None)
        for child in (group.get("children") or {}).values():
            walk(child)

    for group in inventory.values():
        walk(group)
    return tuple(seen)


@dataclass(frozen=True)
class RunRequest:
    """One ansible-playbook run, described as data.

    ``secret_extravars`` are passed to Ansible like extravars but are written
    to their own 0600 file, deleted when the run ends, and masked in every
    event, message and artifact the driver writes.
    """

    run_id: str
    """Names the run directory (.stagecraft/runs/<run_id>/) and runner ident."""
    playbook: str | Path
    """A playbook name resolved in the bundled playbooks/ (e.g. "deploy.yml"), or an absolute path."""
    inventory: Mapping[str, Any]
    """Inventory in Ansible's YAML/JSON inventory shape: {"all": {"hosts": {...}, "children": {...}}}."""
    extravars: Mapping[str, Any] = field(default_factory=dict)
    """Extra variables (``-e``); must be JSON-serialisable and hold no secret value."""
    secret_extravars: Mapping[str, Any] = field(default_factory=dict)
    """Extra variables that hold secrets: a string (the secret), or JSON data whose
    secret parts are the strings under ``content``, ``password`` and ``value`` keys
    (e.g. files for hosts: ``[{"path": ..., "mode": ..., "content": SECRET}]``)."""
    env_allowlist: tuple[str, ...] = ()
    """Names of os.environ variables passed through, on top of BASE_ENV_ALLOWLIST."""
    envvars: Mapping[str, str] = field(default_factory=dict)
    """Variables stagecraft sets for the run (not ANSIBLE_* settings the driver manages)."""
    limit: str | None = None
    """Ansible host pattern for ``--limit``."""
    tags: tuple[str, ...] = ()
    """Only run tasks with these tags (``--tags``)."""
    skip_tags: tuple[str, ...] = ()
    """Skip tasks with these tags (``--skip-tags``)."""
    check: bool = False
    """Check mode (``--check``), used by ``--dry-run``."""
    forks: int = 10
    """Parallel hosts (``--forks``)."""
    verbosity: int = 0
    """Ansible verbosity, 0-4 (``-v`` ... ``-vvvv``)."""
    ssh: SshSettings = field(default_factory=SshSettings)
    """SSH key, known_hosts file and user."""
    timeout: float | None = None
    """Stop the run after this many seconds (None: no limit)."""

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, str) or not _RUN_ID.match(self.run_id):
            raise ValueError(
                f"run id {self.run_id!r} must be 1-128 characters of letters, digits, . _ - "
                "and start with a letter or digit"
            )
        playbook = str(self.playbook)
        if not playbook or (not Path(playbook).is_absolute() and (
            "/" in playbook or playbook.startswith(".")
        )):
            raise ValueError(
                f"playbook {playbook!r} must be a bundled playbook's file name or an absolute path"
            )

        inventory = _frozen_json(self.inventory, "inventory")
        _check_inventory(inventory)
        object.__setattr__(self, "inventory", inventory)
        object.__setattr__(self, "extravars", _frozen_json(self.extravars, "extravars"))

        secrets = _frozen_json(self.secret_extravars, "secret_extravars")
        overlap = set(secrets) & set(self.extravars)
        if overlap:
            # Ansible applies the later -e; rather than rely on order, forbid it.
            raise ValueError(f"variables both secret and not: {sorted(overlap)}")
        object.__setattr__(self, "secret_extravars", secrets)

        envvars = dict(self.envvars)
        for name, value in envvars.items():
            if not _ENV_NAME.match(str(name)) or not isinstance(value, str):
                raise ValueError(f"envvar {name!r} must be a valid name with a string value")
        object.__setattr__(self, "envvars", MappingProxyType(envvars))

        allow = tuple(dict.fromkeys(self.env_allowlist))
        for name in allow:
            if not _ENV_NAME.match(name):
                raise ValueError(f"env allowlist entry {name!r} is not a variable name")
        object.__setattr__(self, "env_allowlist", allow)
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "skip_tags", tuple(self.skip_tags))

        if not 1 <= self.forks <= 500:
            raise ValueError("forks must be between 1 and 500")
        if not 0 <= self.verbosity <= 4:
            raise ValueError("verbosity must be between 0 and 4")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host in the inventory (the --limit is not applied)."""
        return inventory_hosts(self.inventory)

    def allowed_env_names(self) -> tuple[str, ...]:
        """Every os.environ name that may pass through to Ansible."""
        return tuple(dict.fromkeys(BASE_ENV_ALLOWLIST + self.env_allowlist))
