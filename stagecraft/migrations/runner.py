"""Running an engine's command in a one-off container through the Docker CLI.

:class:`LocalDockerRunner` is the :class:`~stagecraft.migrations.base.ContainerRunner`
of tests and of anything that runs next to a Docker engine: ``docker run --rm -i``
of the release image on a network where the database is reachable. The Docker CLI
is a prefix (default ``["docker"]``), so ``["ssh", "host", "docker"]`` runs the same
container on a fleet host; secrets then reach the remote CLI only if ssh forwards
them (``SendEnv``), which is why deploys use the ``migrations`` role instead.

Secret values travel in the Docker CLI's process environment and are named with
``-e NAME`` (never ``NAME=value``), so they never appear in an argv, ``ps`` or a log;
what the container prints is redacted before anyone sees it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence

from stagecraft.errors import EnvironmentMissing, MigrationFailed
from stagecraft.migrations.base import Completed, ContainerCommand
from stagecraft.redact import Redactor

#: Label on every one-off migration container, so leftovers can be found.
LABEL = "org.stagecraft.migration"


class LocalDockerRunner:
    """Runs each command in ``docker run --rm -i [--network N] -e ... IMAGE argv``.

    ``secret_env`` (e.g. ``{"DATABASE_URL": "postgresql://..."}``) is passed through
    the environment; ``env`` holds plain variables (a command's own ``env`` wins over
    them). On timeout the container is removed (``docker rm -f``) and MigrationFailed
    is raised.
    """

    def __init__(self, image: str, *, network: str | None = None,
                 secret_env: Mapping[str, str] | None = None,
                 env: Mapping[str, str] | None = None,
                 docker: Sequence[str] = ("docker",), name_prefix: str = "stagecraft-migrate",
                 workdir: str | None = None) -> None:
        self.image = image
        self.network = network
        self.docker = tuple(docker)
        self.name_prefix = name_prefix
        self.workdir = workdir
        self._secret_env = dict(secret_env or {})
        self._env = dict(env or {})
        self.redactor = Redactor(self._secret_env.values())

    def __repr__(self) -> str:  # never the secret values
        return (f"LocalDockerRunner(image={self.image!r}, network={self.network!r}, "
                f"secrets={sorted(self._secret_env)})")

    def argv(self, command: ContainerCommand, name: str) -> list[str]:
        """The Docker CLI's argv for ``command`` in a container called ``name``: no
        secret value in it."""
        argv = [*self.docker, "run", "--rm", "-i", "--name", name, "--label", f"{LABEL}=1"]
        if self.network:
            argv += ["--network", self.network]
        if self.workdir:
            argv += ["--workdir", self.workdir]
        for key in sorted(self._secret_env):
            argv += ["-e", key]
        for key, value in sorted({**self._env, **command.env}.items()):
            if key in self._secret_env:
                continue  # a secret of the same name is already passed, by name
            argv += ["-e", f"{key}={value}"]
        argv += [self.image, *command.argv]
        return argv

    def run(self, command: ContainerCommand, *, timeout: float) -> Completed:
        name = f"{self.name_prefix}-{uuid.uuid4().hex[:10]}"
        argv = self.argv(command, name)
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env={**os.environ, **self._secret_env})
        except FileNotFoundError as exc:
            raise EnvironmentMissing(f"cannot run {self.docker[0]!r}: {exc.strerror}",
                                     hint="install the Docker CLI, or start Docker "
                                     "(scripts/ensure-docker.sh)") from exc
        try:
            stdout, stderr = proc.communicate(command.stdin or "", timeout=timeout)
        except subprocess.TimeoutExpired:
            # Killing the CLI would leave the container running: remove it first.
            subprocess.run([*self.docker, "rm", "-f", "-v", name], capture_output=True, timeout=60,
                           check=False)
            proc.kill()
            stdout, stderr = proc.communicate()
            output = self.redactor.text((stdout or "") + (stderr or ""))
            raise MigrationFailed(
                f"the migration command {' '.join(command.argv)!r} in {self.image} did not "
                f"finish within {timeout:g} s; its container was removed",
                argv=self.redactor.data(argv), output=output,
                output_tail=output[-4000:],
                hint="raise migrations.timeout in stagecraft.yml, or find what the "
                "migration waits for (a lock held by another session?)") from None
        return Completed(proc.returncode, self.redactor.text(stdout),
                         self.redactor.text(stderr))


# ----------------------------------------------------------- the migrations role


def role_vars(image: str, command: ContainerCommand, *, timeout: float,
              secret_env: Mapping[str, str] | None = None,
              env: Mapping[str, str] | None = None, network: str | None = None,
              name: str | None = None, changed_when_applied: bool = False) -> dict:
    """The variables of the ``migrations`` role (and stagecraft.platform.migrate, plus
    ``migrations_host``) that run ``command`` as LocalDockerRunner would on the host.
    ``migrations_secret_env`` holds secret values: extravars the caller keeps out of
    logs and files (the ansible driver's secret handling)."""
    return {
        "migrations_image": image,
        "migrations_argv": list(command.argv),
        "migrations_stdin": command.stdin or "",
        "migrations_env": {**dict(env or {}), **dict(command.env)},
        "migrations_secret_env": dict(secret_env or {}),
        "migrations_network": network or "",
        "migrations_timeout": max(1, int(round(timeout))),
        "migrations_name": name or "",
        "migrations_changed_when_applied": changed_when_applied,
    }


def completed_from_result(result: Mapping) -> Completed:
    """The Completed of the role's fact ``migrations_result`` (read from the job events
    of the set_fact task "Record the migration's outcome, secrets masked").

    Raises MigrationFailed when the role timed out or did not run (check mode)."""
    if result.get("skipped"):
        raise MigrationFailed("the migration command did not run (check mode)",
                              hint="run without --dry-run to apply migrations")
    stdout, stderr = str(result.get("stdout") or ""), str(result.get("stderr") or "")
    if result.get("timed_out"):
        output = "\n".join(p for p in (stdout, stderr) if p)
        raise MigrationFailed(
            f"the migration command did not finish in time; its container "
            f"{result.get('name')} was removed", output=output, output_tail=output[-4000:],
            hint="raise migrations.timeout in stagecraft.yml, or find what the migration "
            "waits for")
    return Completed(int(result.get("rc", 1)), stdout, stderr)
