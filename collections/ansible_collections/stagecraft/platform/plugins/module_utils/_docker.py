# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``docker`` and ``docker compose`` command lines, through AnsibleModule.run_command.

The CLIs rather than the Docker SDK: the host has them (bootstrap installs Docker
and Compose v2), and nothing else needs installing for the modules to run.
Arguments are always lists (no shell); secrets go through stdin only.
"""

from __future__ import annotations

import io
import tarfile
import time

from ansible_collections.stagecraft.platform.plugins.module_utils._compose import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    parse_inspect,
)


class DockerError(Exception):
    """A docker command failed. ``detail`` is its stderr (or stdout), trimmed."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message}: {self.detail}" if self.detail else self.message


class Docker:
    """Docker commands for one compose project and one release's compose file.

    ``run_command`` is AnsibleModule.run_command. ``environ`` is added to every
    command's environment (DOCKER_CONFIG while logged in to a registry).
    """

    def __init__(self, run_command, project: str, compose_file: str = "",
                 environ: dict | None = None) -> None:
        self._run_command = run_command
        self.project = project
        self.compose_file = compose_file
        self.environ = dict(environ or {})

    # ------------------------------------------------------------- plumbing

    def run(self, args: list, what: str, data=None, binary: bool = False,
            check: bool = True) -> tuple:
        """Run ``docker ARGS``; raise DockerError saying ``what`` failed unless ``check`` is off."""
        kwargs = {"environ_update": self.environ} if self.environ else {}
        if data is not None:
            kwargs["data"] = data
            kwargs["binary_data"] = binary
        rc, out, err = self._run_command(["docker", *args], **kwargs)
        if check and rc != 0:
            raise DockerError(f"cannot {what} (docker exit {rc})", (err or out or "").strip()[-2000:])
        return rc, out, err

    def compose(self, args: list, what: str, check: bool = True) -> tuple:
        return self.run(["compose", "-p", self.project, "-f", self.compose_file, *args], what,
                        check=check)

    # ---------------------------------------------------------------- reads

    def compose_config_json(self) -> str:
        """The release's compose file as Compose resolves it (env files merged in:
        the text holds secrets, keep it in memory only)."""
        return self.compose(["config", "--format", "json"], f"read {self.compose_file}")[1]

    def containers(self, service: str | None = None) -> list:
        """Every container of the project (or of one service), in any state."""
        args = ["ps", "--all", "--no-trunc", "--quiet",
                "--filter", f"label={COMPOSE_PROJECT}={self.project}"]
        if service:
            args += ["--filter", f"label={COMPOSE_SERVICE}={service}"]
        out = self.run(args, f"list the containers of {self.project}")[1]
        ids = out.split()
        return self.inspect(ids)

    def inspect(self, ids: list) -> list:
        """Containers by id; ones removed meanwhile are left out."""
        if not ids:
            return []
        rc, out, err = self.run(["inspect", "--type", "container", *ids], "inspect containers",
                                check=False)
        if rc != 0 and "No such" not in (err or ""):
            raise DockerError(f"cannot inspect containers (docker exit {rc})", (err or "").strip())
        return parse_inspect(out or "[]")

    def image_present(self, ref: str) -> bool:
        rc = self.run(["image", "inspect", "--format", "{{.Id}}", ref],
                      f"inspect the image {ref}", check=False)[0]
        return rc == 0

    def logs(self, container_id: str, lines: int = 20) -> str:
        """The last ``lines`` lines the container wrote (stdout and stderr)."""
        rc, out, err = self.run(["logs", "--tail", str(lines), container_id],
                                "read container logs", check=False)
        text = "\n".join(part for part in ((out or "").rstrip(), (err or "").rstrip()) if part)
        return text if rc == 0 else f"(docker logs failed: {(err or '').strip()})"

    # --------------------------------------------------------------- writes

    def login(self, server: str, username: str, password: str) -> None:
        """Log in with the password on stdin (never in argv or a log)."""
        self.run(["login", "--username", username, "--password-stdin", server],
                 f"log in to {server} as {username}", data=password)

    def pull(self, ref: str) -> None:
        self.run(["pull", "--quiet", ref], f"pull {ref}")

    def put_file(self, container_id: str, path: str, content: bytes) -> None:
        """Write a file into a container with `docker cp` from a tar stream: no tool
        (not even a shell) is needed in the image, and missing parents are made."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(content)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(content))
        self.run(["cp", "-", f"{container_id}:/"], f"write {path} into {container_id[:12]}",
                 data=buffer.getvalue(), binary=True)

    def stop(self, ids: list) -> None:
        """Stop containers, each within its own stop grace period (its StopTimeout)."""
        if ids:
            self.run(["stop", *ids], "stop containers")

    def remove(self, ids: list, force: bool = False, anonymous_volumes: bool = False) -> None:
        """Remove containers; ``anonymous_volumes`` also removes their unnamed volumes
        (scratch space of replaced replicas; named volumes are never touched)."""
        if ids:
            args = ["rm", *(["--force"] if force else []),
                    *(["--volumes"] if anonymous_volumes else []), *ids]
            self.run(args, "remove containers")
