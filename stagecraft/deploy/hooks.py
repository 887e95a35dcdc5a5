"""Deploy hooks: executables in ``.stagecraft/hooks/`` run at fixed points of a release.

Like Kamal's hooks: ``pre-build``, ``pre-deploy``, ``post-deploy`` run here, on the
controller; ``pre-rollout`` and ``post-rollout`` run once per batch of hosts, from the
rollout play (delegated to the controller), so they see the batch's hosts. Each gets
``STAGECRAFT_*`` variables saying what is happening; a hook that exits non-zero
stops the release. See spec/deploy/hooks.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stagecraft.errors import CommandFailed, ConfigError, HookFailed

CONTROLLER_HOOKS = ("pre-build", "pre-deploy", "post-deploy")
BATCH_HOOKS = ("pre-rollout", "post-rollout")
HOOKS = (*CONTROLLER_HOOKS, *BATCH_HOOKS)
DEFAULT_TIMEOUT = 600.0
_PHASE_OF = {"pre-build": "build", "pre-deploy": "lock", "post-deploy": "finalize",
             "pre-rollout": "rollout", "post-rollout": "rollout"}


def hooks_dir(project_dir: Path) -> Path:
    return Path(project_dir) / ".stagecraft" / "hooks"


def find_hooks(project_dir: Path) -> dict[str, Path]:
    """The hooks present: name -> path. A hook file that cannot run is an error now,
    not a surprise halfway through a deploy."""
    directory = hooks_dir(project_dir)
    found: dict[str, Path] = {}
    if not directory.is_dir():
        return found
    for name in HOOKS:
        path = directory / name
        if not path.exists():
            continue
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ConfigError(f"hook {path} is not an executable file",
                              hint=f"make it executable (chmod +x {path}) or remove it")
        found[name] = path.resolve()
    return found


@dataclass(frozen=True)
class HookContext:
    """What every hook of one release is told."""

    project: str
    environment: str
    release: str
    action: str
    performer: str
    hosts: tuple[str, ...]
    message: str = ""

    def variables(self, hook: str, hosts: Iterable[str] | None = None) -> dict[str, str]:
        return {
            "STAGECRAFT_HOOK": hook,
            "STAGECRAFT_PROJECT": self.project,
            "STAGECRAFT_ENVIRONMENT": self.environment,
            "STAGECRAFT_RELEASE": self.release,
            "STAGECRAFT_ACTION": self.action,
            "STAGECRAFT_PERFORMER": self.performer,
            "STAGECRAFT_PHASE": _PHASE_OF[hook],
            "STAGECRAFT_HOSTS": ",".join(hosts if hosts is not None else self.hosts),
            "STAGECRAFT_MESSAGE": self.message,
        }

    def batch_variables(self) -> dict[str, str]:
        """The variables the rollout play's batch hooks start from (it adds the
        hook name and the batch's hosts)."""
        data = self.variables("pre-rollout")
        for name in ("STAGECRAFT_HOOK", "STAGECRAFT_HOSTS"):
            data.pop(name)
        return data


@dataclass
class Hooks:
    """The hooks of a project for one release; ``skip`` turns them all off."""

    project_dir: Path
    context: HookContext
    found: dict[str, Path] = field(default_factory=dict)
    skip: bool = False
    timeout: float = DEFAULT_TIMEOUT
    secrets: tuple[str, ...] = ()

    @classmethod
    def load(cls, project_dir: Path, context: HookContext, *, skip: bool = False,
             secrets: Iterable[str] = ()) -> Hooks:
        found = {} if skip else find_hooks(project_dir)
        return cls(project_dir=Path(project_dir), context=context, found=found, skip=skip,
                   secrets=tuple(secrets))

    def batch_hooks(self) -> dict[str, str]:
        """Paths of pre-rollout/post-rollout for the rollout play."""
        return {name: str(path) for name, path in self.found.items() if name in BATCH_HOOKS}

    def run(self, hook: str, *, on_line: Callable[[str], None] | None = None,
            extra: Mapping[str, str] | None = None) -> bool:
        """Run ``hook`` if present; HookFailed when it fails. Returns whether it ran."""
        from stagecraft.execs import run

        path = self.found.get(hook)
        if path is None:
            return False
        env = {**os.environ, **self.context.variables(hook), **(extra or {})}
        lines: list[str] = []

        def keep(stream: str, line: str) -> None:
            lines.append(line)
            if on_line is not None:
                on_line(f"hook {hook}: {line}")

        try:
            run([str(path)], cwd=self.project_dir, env=env, timeout=self.timeout,
                secrets=self.secrets, on_line=keep, check=True)
        except CommandFailed as exc:
            tail = "\n".join(lines[-20:]) or exc.output_tail
            reason = (f"exited with {exc.returncode}" if exc.returncode is not None
                      else exc.message)
            raise HookFailed(
                f"hook {hook} ({path}) {reason}" + (f":\n{tail}" if tail else ""),
                argv=[str(path)], returncode=exc.returncode, output_tail=tail,
                hint=f"fix the hook, or deploy without hooks: --skip-hooks") from None
        return True
