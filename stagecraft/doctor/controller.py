"""Checks of the machine stagecraft runs on (the controller).

Each check asks the real thing (the engine answers, the plugin prints its version,
the file system has room) and says what to do when the answer is wrong. What a
cloud provider needs on top of this (images it builds here, say) comes from
the provider's own ``controller_checks``.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

from stagecraft import execs
from stagecraft.doctor.model import Check, missing, ok, version_tuple, wrong
from stagecraft.errors import StagecraftError

SCOPE = "controller"
MIN_PYTHON = (3, 11)
#: community.docker's docker_compose_v2 module and `stagecraft dev` need at least this.
MIN_COMPOSE = (2, 18)
MIN_DOCKER = (20, 10)
#: Below this much free space, image builds and fleets fail half-way.
MIN_FREE_GIB = 5.0

SETUP_HINT = "run `make setup` in the stagecraft checkout (it installs what is missing)"
DOCKER_HINT = ("run `make docker` in the stagecraft checkout (it installs Debian's docker.io "
               "and starts dockerd), or install Docker Engine and start it")


def _answer(argv: list[str], timeout: float = 20) -> tuple[bool, str]:
    """(ran and exited 0, its first line of output or of its error)."""
    try:
        proc = execs.run(argv, timeout=timeout, check=False)
    except StagecraftError as exc:  # not installed, or timed out
        return False, exc.message
    text = (proc.stdout if proc.ok else proc.stderr or proc.stdout).strip()
    return proc.ok, (text.splitlines() or [f"exit code {proc.returncode}"])[0]


def check_python() -> Check:
    found = platform.python_version()
    if sys.version_info[:2] >= MIN_PYTHON:
        return ok(SCOPE, "python", f"{found} ({sys.executable})")
    return wrong(SCOPE, "python", f"{found} is older than {'.'.join(map(str, MIN_PYTHON))}",
                 "install Python 3.11 or newer and run `make setup` with PYTHON=/path/to/it")


def check_docker_engine() -> Check:
    if shutil.which("docker") is None:
        return missing(SCOPE, "docker engine", "the docker command is not installed",
                       DOCKER_HINT)
    answered, text = _answer(["docker", "version", "--format", "{{.Server.Version}}"])
    if not answered:
        return missing(SCOPE, "docker engine", f"no engine answers ({text})", DOCKER_HINT)
    if version_tuple(text) < MIN_DOCKER:
        return wrong(SCOPE, "docker engine", f"{text} is older than "
                     f"{'.'.join(map(str, MIN_DOCKER))}", DOCKER_HINT)
    return ok(SCOPE, "docker engine", text)


def check_compose() -> Check:
    want = ".".join(map(str, MIN_COMPOSE))
    if shutil.which("docker") is None:
        return missing(SCOPE, "compose v2 plugin", "the docker command is not installed",
                       DOCKER_HINT)
    answered, text = _answer(["docker", "compose", "version", "--short"])
    if not answered:
        return missing(SCOPE, "compose v2 plugin", f"`docker compose` does not run ({text})",
                       SETUP_HINT + " (it puts Compose v2 in ~/.docker/cli-plugins)")
    if version_tuple(text) < MIN_COMPOSE:
        return wrong(SCOPE, "compose v2 plugin", f"{text} is older than {want}", SETUP_HINT)
    return ok(SCOPE, "compose v2 plugin", text)


def check_program(name: str, why: str, package: str) -> Check:
    path = shutil.which(name)
    if path is None:
        return missing(SCOPE, name, f"not installed ({why})",
                       f"apt-get install {package}, or {SETUP_HINT}")
    return ok(SCOPE, name, path)


def check_ansible() -> Check:
    # The runner looks for ansible-playbook beside the interpreter first (a venv).
    beside = Path(sys.executable).with_name("ansible-playbook")
    path = str(beside) if os.access(beside, os.X_OK) else shutil.which("ansible-playbook")
    if path is None:
        return missing(SCOPE, "ansible-playbook", "not installed",
                       "pip install stagecraft's dependencies (`make setup` does it)")
    return ok(SCOPE, "ansible-playbook", path)


def docker_root() -> Path | None:
    answered, text = _answer(["docker", "info", "--format", "{{.DockerRootDir}}"])
    return Path(text) if answered and text.startswith("/") else None


def check_disk(paths: dict[str, Path], min_free_gib: float = MIN_FREE_GIB) -> list[Check]:
    """Free space where images and state go (``paths``: label -> directory)."""
    checks: list[Check] = []
    for label, path in paths.items():
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free / 2**30
        detail = f"{free:.1f} GiB free on {label} ({path})"
        if free < min_free_gib:
            checks.append(wrong(SCOPE, f"disk space: {label}", detail,
                                f"free at least {min_free_gib:g} GiB there (`docker system "
                                "prune` removes unused images and containers)"))
        else:
            checks.append(ok(SCOPE, f"disk space: {label}", detail))
    return checks


def controller_checks(project_dir: Path) -> list[Check]:
    """Every check of the controller that does not depend on a cloud provider."""
    checks = [check_python(), check_docker_engine(), check_compose(), check_ansible(),
              check_program("ssh", "stagecraft ssh, logs, exec, the probe and Ansible use it",
                            "openssh-client"),
              check_program("ssh-keygen", "makes and reads SSH keys and host key fingerprints",
                            "openssh-client"),
              check_program("git", "release ids name the commit they come from", "git")]
    paths = {"project": project_dir}
    root = docker_root()
    if root is not None:
        paths["docker"] = root
    return checks + check_disk(paths)
