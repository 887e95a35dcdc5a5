# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The work of stagecraft.platform.compose_rollout: pull a release's images, then
make the host run the release, service by service, without a moment where a
routed service has no healthy container (spec/roles/rollout.md).

Routed services are served by Traefik's file provider: the rollout writes their
containers as the servers of their Traefik service and waits until Traefik's API
shows the change, so an old container stops taking requests the moment the new
ones are healthy, and is stopped after `drain` seconds for the requests in flight.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time

from ansible_collections.stagecraft.platform.plugins.module_utils._compose import (
    CREATED,
    KEPT,
    NO_CHANGE_ACTIONS,
    RECREATED,
    REMOVED,
    ComposeConfigError,
    decide,
    orphan_services,
    parse_compose_config,
    releases_to_prune,
    service_order,
)
from ansible_collections.stagecraft.platform.plugins.module_utils._docker import (
    Docker,
    DockerError,
)
from ansible_collections.stagecraft.platform.plugins.module_utils._traefik import (
    TraefikError,
    read_text,
    server_urls,
    servers_document,
    servers_path,
    wait_served,
    write_atomically,
)
from ansible_collections.stagecraft.platform.plugins.module_utils._release import (
    RELEASES,
    ReleaseError,
    append_audit,
    check_release_id,
    current_release,
    release_ids,
    remove_release,
    switch_current,
)
from ansible_collections.stagecraft.platform.plugins.module_utils._lock import utc_now

POLL_SECONDS = 0.2
# A container without a healthcheck must stay up this long, without restarting,
# before it counts as started.
SETTLE_SECONDS = 1.0
LOG_LINES = 20


class RolloutFailed(Exception):
    """A service could not be brought to the release; ``health`` and ``logs`` are the
    new containers' last probe outputs and log lines, by container name."""

    def __init__(self, message: str, health: dict | None = None, logs: dict | None = None):
        super().__init__(message)
        self.message = message
        self.health = health or {}
        self.logs = logs or {}


class StepFailed(Exception):
    """Pulling or rolling out failed: ``message`` for the user, ``result`` the rest of
    the module's failure result (what was done before the failure)."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.message = message
        self.result = result or {}


class ComposeRollout:
    """The pull and rollout of one release on this host. ``pull()`` and ``rollout()``
    return the module result or raise StepFailed; ``run()`` is compose_rollout's whole
    call, ending with exit_json or fail_json."""

    def __init__(self, module, phase: str | None = None) -> None:
        self.module = module
        params = module.params
        self.project = params["project_name"]
        self.base_dir = params["base_dir"]
        self.release_id = params["release_id"]
        self.phase = phase or params.get("phase") or "rollout"
        self.registry = params.get("registry") or {}
        self.health_timeout = float(params["health_timeout"])
        self.drain_seconds = float(params["drain"])
        self.traefik_api = params["traefik_api"]
        self.traefik_timeout = float(params["traefik_timeout"])
        self.force = bool(params["force"])
        self.keep_releases = int(params["keep_releases"])
        self.action = params["action"]
        self.performer = params.get("performer") or ""
        self.start_stateful = bool(params.get("start_stateful"))
        self.check = module.check_mode
        self.host = platform.node()
        self.release_dir = os.path.join(self.base_dir, RELEASES, self.release_id)
        self.compose_file = os.path.join(self.release_dir, "compose.yml")
        self.docker = Docker(module.run_command, self.project, self.compose_file)
        self.traefik_dir = params.get("traefik_dir") or os.path.join(
            self.base_dir, "traefik", "dynamic")
        # Routed services whose servers file this run wrote or removed.
        self.routed: list = []
        self._services: dict | None = None

    # ------------------------------------------------------------------ entry

    def run(self) -> None:
        try:
            result = self.pull() if self.phase == "pull" else self.rollout()
        except StepFailed as exc:
            self.module.fail_json(msg=exc.message, release_id=self.release_id, **exc.result)
            return
        self.module.exit_json(**result)

    def pull(self) -> dict:
        """Pull the images the host lacks (and start new stateful services when asked)."""
        try:
            missing = self._missing_release()
            return missing if missing is not None else self._pull(self._desired_services())
        except (ReleaseError, ComposeConfigError, DockerError, OSError) as exc:
            raise self._failure(exc) from exc

    def rollout(self) -> dict:
        """Bring every service to the release, switch ``current``, prune old releases."""
        try:
            missing = self._missing_release()
            return missing if missing is not None else self._rollout(self._desired_services())
        except (ReleaseError, ComposeConfigError, DockerError, OSError) as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> StepFailed:
        if isinstance(exc, (ReleaseError, ComposeConfigError, DockerError)):
            return StepFailed(f"host {self.host}: {exc}")
        return StepFailed(f"host {self.host}: cannot update {self.base_dir}: {exc}")

    def _missing_release(self) -> dict | None:
        """None when the release directory is there; else the check-mode result of a
        deploy whose upload was skipped (StepFailed outside check mode)."""
        check_release_id(self.release_id)
        if self.keep_releases < 1:
            raise ReleaseError("keep_releases must be 1 or more (the current release is kept)")
        if os.path.isdir(self.release_dir):
            return None
        if self.check and self.action == "deploy":
            # A dry run uploads nothing, so a new release is not there to read.
            return {"changed": True, "release_id": self.release_id, "services": {},
                    "current": None, "pruned": [],
                    "msg": f"release {self.release_id} is not on the host yet (check mode "
                           "uploads nothing): it would be uploaded and rolled out"}
        present = release_ids(self.base_dir)
        raise StepFailed(
            f"host {self.host}: release {self.release_id} is not on this host "
            f"({self.release_dir} is missing). Deploy it (its files are uploaded then), "
            f"or roll back to a release this host has: {', '.join(present) or 'none'}",
            {"releases": present})

    def _desired_services(self) -> dict:
        if self._services is None:
            self._services = parse_compose_config(self.docker.compose_config_json(),
                                                  source=f"{self.compose_file}")
        return self._services

    # ------------------------------------------------------------------- pull

    def _pull(self, services: dict) -> dict:
        images = sorted({service.image for service in services.values()})
        missing = [ref for ref in images if not self.docker.image_present(ref)]
        result = {
            "changed": bool(missing),
            "release_id": self.release_id,
            "images": {ref: ("pulled" if ref in missing else "present") for ref in images},
            "pulled": missing,
        }
        if not self.check and missing:
            config_dir = self._login()
            try:
                for ref in missing:
                    self.docker.pull(ref)
            finally:
                if config_dir:
                    self.docker.environ.pop("DOCKER_CONFIG", None)
                    shutil.rmtree(config_dir, ignore_errors=True)
        if self.start_stateful:
            # Pre-deploy migrations need the database before anything rolls: stateful
            # services that do not exist yet are created now (existing ones are kept,
            # as the rollout would keep them).
            absent = [desired for name, desired in sorted(services.items())
                      if desired.strategy == "stateful" and not self.docker.containers(name)]
            result["started"] = [desired.name for desired in absent]
            if absent:
                result["changed"] = True
                if not self.check:
                    self._ensure_external_networks()
                    for desired in absent:
                        self._up(desired, CREATED)
        return result

    def _ensure_external_networks(self) -> None:
        """Compose refuses to start anything while a network the file declares external
        is missing (the shared network Traefik's role creates, on a first deploy)."""
        document = json.loads(self.docker.compose_config_json())
        for key, spec in sorted((document.get("networks") or {}).items()):
            if isinstance(spec, dict) and spec.get("external"):
                name = spec.get("name") or key
                rc = self.docker.run(["network", "inspect", name],
                                     f"inspect network {name}", check=False)[0]
                if rc != 0:
                    self.docker.run(["network", "create", name], f"create network {name}")

    def _login(self) -> str | None:
        """Log in with a throwaway DOCKER_CONFIG (removed after the pulls), so the
        registry password is never stored on the host. None when no login is set."""
        server = self.registry.get("server") or ""
        username = self.registry.get("username") or ""
        password = self.registry.get("password") or ""
        if not (server and username and password):
            return None
        config_dir = tempfile.mkdtemp(prefix="stagecraft-docker-")
        self.docker.environ["DOCKER_CONFIG"] = config_dir
        try:
            self.docker.login(server, username, password)
        except BaseException:
            self.docker.environ.pop("DOCKER_CONFIG", None)
            shutil.rmtree(config_dir, ignore_errors=True)
            raise
        return config_dir

    # ---------------------------------------------------------------- rollout

    def _rollout(self, services: dict) -> dict:
        containers = self._settled(self.docker.containers())
        by_service: dict = {}
        for container in containers:
            by_service.setdefault(container.service, []).append(container)
        order = service_order(services)
        plan = {name: decide(services[name], by_service.get(name, []), self.force)
                for name in order}
        orphans = orphan_services(services, containers)
        previous = current_release(self.base_dir)
        switch = previous != self.release_id
        protected = {self.release_id} | ({previous} if previous else set())
        prune = releases_to_prune(release_ids(self.base_dir), self.keep_releases, protected)

        if self.check:
            planned = {name: {"action": plan[name], "seconds": 0.0,
                              "containers": _names(c for c in by_service.get(name, []) if c.running)}
                       for name in order}
            for name in orphans:
                planned[name] = {"action": REMOVED, "seconds": 0.0,
                                 "containers": _names(by_service[name])}
            changed = (any(item["action"] not in NO_CHANGE_ACTIONS for item in planned.values())
                       or switch or bool(prune))
            return {"changed": changed, "release_id": self.release_id, "services": planned,
                    "current": self.release_id, "previous": previous, "pruned": prune}

        for name in order:
            if plan[name] == KEPT:
                self.module.warn(f"service {name} is stateful and its definition changed: "
                                 "kept as it runs (force recreates it)")
        results: dict = {}
        working_on = ""
        try:
            for working_on in order:
                results[working_on] = self._apply(services[working_on], plan[working_on],
                                                  by_service.get(working_on, []))
            for working_on in orphans:
                results[working_on] = self._remove_service(working_on, by_service[working_on])
        except (RolloutFailed, DockerError, TraefikError, OSError) as exc:
            failure = exc if isinstance(exc, RolloutFailed) else RolloutFailed(
                f"service {working_on} on host {self.host}: {exc}")
            self._audit(previous, results, result="failed", error=failure.message)
            raise StepFailed(failure.message, {
                "services": results, "current": previous, "health": failure.health,
                "logs": failure.logs, "routed": self.routed}) from exc

        services_changed = (any(item["action"] not in NO_CHANGE_ACTIONS
                                for item in results.values()) or bool(self.routed))
        if switch:
            switch_current(self.base_dir, self.release_id)
        if switch or services_changed:
            self._audit(previous, results, result="ok")
        pruned = self._prune(prune)
        return {"changed": services_changed or switch or bool(pruned),
                "release_id": self.release_id, "services": results,
                "current": self.release_id, "previous": previous, "pruned": pruned,
                "routed": self.routed}

    def _apply(self, desired, action: str, containers: list) -> dict:
        started = time.monotonic()
        name = desired.name
        if action in NO_CHANGE_ACTIONS:
            running = [c for c in containers if c.running]
            names = _names(running)
            if desired.routed:
                # Puts back a servers file that is missing or was edited.
                self._route(desired, running)
        elif desired.strategy == "rolling":
            names = self._roll(desired, containers)
        else:
            names = self._up(desired, action)
        return {"action": action, "containers": names,
                "seconds": round(time.monotonic() - started, 1)}

    # -------------------------------------------------------------- rolling

    def _roll(self, desired, containers: list) -> list:
        """Scale to old + replicas without touching the old containers, wait for the
        new ones, make Traefik send to the new ones only, wait `drain` seconds for the
        requests in flight, then stop and remove the old ones. A failure removes the
        new containers and leaves the old ones serving."""
        name = desired.name
        leftovers = [c.id for c in containers if not c.running]
        self.docker.remove(leftovers, force=True, anonymous_volumes=True)
        old = [c for c in containers if c.running]
        old_ids = {c.id for c in old}
        scale = len(old) + desired.replicas
        try:
            self.docker.compose(["up", "--detach", "--no-deps", "--no-recreate",
                                 "--scale", f"{name}={scale}", name],
                                f"start {desired.replicas} new container(s) of {name}")
            new = [c for c in self.docker.containers(name) if c.id not in old_ids]
            if len(new) != desired.replicas:
                raise RolloutFailed(
                    f"service {name} on host {self.host}: Compose started {len(new)} new "
                    f"container(s), expected {desired.replicas}")
            new = self._wait_ready(name, new)
            if desired.routed:
                self._route(desired, new)
        except (RolloutFailed, DockerError, TraefikError, OSError) as exc:
            failure = exc if isinstance(exc, RolloutFailed) else RolloutFailed(
                f"service {name} on host {self.host}: {exc}")
            leftover = [c for c in self.docker.containers(name) if c.id not in old_ids]
            if not failure.logs:
                failure.health, failure.logs = self._diagnostics(leftover)
            if desired.routed and old:
                # Traefik goes back to the old containers before the new ones go.
                self._restore_route(desired, old)
            self.docker.remove([c.id for c in leftover], force=True, anonymous_volumes=True)
            raise failure
        if old:
            # Traefik no longer sends new requests to the old containers.
            time.sleep(self.drain_seconds)
        self.docker.stop([c.id for c in old])
        self.docker.remove([c.id for c in old], anonymous_volumes=True)
        return _names(new)

    # ---------------------------------------------------------------- routing

    def _route(self, desired, containers: list) -> None:
        """Make ``containers`` the servers of ``desired``'s Traefik service: write the
        file when it differs, then wait until Traefik's API shows it (TraefikError)."""
        urls = server_urls(containers, desired.traefik_port)
        path = servers_path(self.traefik_dir, desired.name)
        text = servers_document(desired, urls)
        if read_text(path) != text:
            os.makedirs(self.traefik_dir, exist_ok=True)
            write_atomically(path, text)
            if desired.name not in self.routed:
                self.routed.append(desired.name)
        wait_served(self.traefik_api, desired.traefik_service, urls, self.traefik_timeout)

    def _restore_route(self, desired, old: list) -> None:
        try:
            self._route(desired, old)
        except (TraefikError, OSError) as exc:
            self.module.warn(f"could not point Traefik back at the old containers of "
                             f"{desired.name}: {exc}")

    def _unroute(self, name: str) -> None:
        """Remove a removed service's servers file (its router went with private.yml)."""
        path = servers_path(self.traefik_dir, name)
        if os.path.exists(path):
            os.remove(path)
            self.routed.append(name)

    # --------------------------------------------------- recreate and stateful

    def _up(self, desired, action: str) -> list:
        name = desired.name
        args = ["up", "--detach", "--no-deps"]
        if action == RECREATED:
            args.append("--force-recreate")
        elif action == CREATED and desired.strategy == "stateful":
            args.append("--no-recreate")
        self.docker.compose([*args, name], f"{'recreate' if action == RECREATED else 'create'} {name}")
        running = [c for c in self.docker.containers(name) if c.running or c.status == "restarting"]
        # On failure there is nothing older to fall back to: the containers stay for
        # inspection.
        ready = self._wait_ready(name, running)
        if desired.routed:
            self._route(desired, ready)
        return _names(ready)

    def _remove_service(self, name: str, containers: list) -> dict:
        started = time.monotonic()
        running = [c.id for c in containers if c.running]
        self._unroute(name)
        self.docker.stop(running)
        self.docker.remove([c.id for c in containers], force=True)
        return {"action": REMOVED, "containers": _names(containers),
                "seconds": round(time.monotonic() - started, 1)}

    # ------------------------------------------------------------ waiting

    def _settled(self, containers: list) -> list:
        """The containers once none is still `starting` its healthcheck (or after
        health_timeout): deciding on a starting container would roll it needlessly."""
        deadline = time.monotonic() + self.health_timeout
        while True:
            starting = [c.id for c in containers if c.running and c.health == "starting"]
            if not starting or time.monotonic() >= deadline:
                return containers
            time.sleep(POLL_SECONDS)
            containers = self.docker.containers()

    def _wait_ready(self, name: str, containers: list) -> list:
        """Wait until every container is running and healthy (running for a moment
        without restarting, when it has no healthcheck); RolloutFailed otherwise."""
        ids = [c.id for c in containers]
        started = time.monotonic()
        deadline = started + self.health_timeout
        while True:
            current = self.docker.inspect(ids)
            gone = len(current) < len(ids)
            failed = [c for c in current if c.health == "unhealthy"
                      or c.status in ("exited", "dead") or c.restart_count > 0]
            if gone or failed:
                what = "disappeared" if gone else ", ".join(
                    f"{c.name} is {_state_words(c)}" for c in failed)
                raise RolloutFailed(f"service {name} on host {self.host}: {what}",
                                    *self._diagnostics(current))
            settled = time.monotonic() - started >= SETTLE_SECONDS
            if all(c.running and (c.health == "healthy" or (not c.health and settled))
                   for c in current):
                return current
            if time.monotonic() >= deadline:
                waiting = ", ".join(f"{c.name} ({_state_words(c)})" for c in current
                                    if not c.ready)
                raise RolloutFailed(
                    f"service {name} on host {self.host}: not healthy within "
                    f"{self.health_timeout:g} s: {waiting}", *self._diagnostics(current))
            time.sleep(POLL_SECONDS)

    def _diagnostics(self, containers: list) -> tuple:
        health = {c.name: list(c.health_outputs) for c in containers if c.health}
        logs = {c.name: self.docker.logs(c.id, LOG_LINES) for c in containers}
        return health, logs

    # ---------------------------------------------------- audit and pruning

    def _audit(self, previous, results: dict, result: str, error: str = "") -> None:
        record = {
            "time": utc_now(),
            "release": self.release_id,
            "previous": previous,
            "action": self.action,
            "performer": self.performer,
            "host": self.host,
            "result": result,
            "services": {name: item["action"] for name, item in results.items()},
        }
        if error:
            record["error"] = error
        append_audit(self.base_dir, record)

    def _prune(self, releases: list) -> list:
        pruned = []
        for release in releases:
            try:
                remove_release(self.base_dir, release)
                pruned.append(release)
            except (OSError, ReleaseError) as exc:
                self.module.warn(f"could not prune release {release}: {exc}")
        return pruned


def _names(containers) -> list:
    return sorted(c.name for c in containers)


def _state_words(container) -> str:
    if container.status in ("exited", "dead"):
        return f"{container.status} (exit code {container.exit_code})"
    if container.restart_count > 0:
        return f"restarting ({container.restart_count} restarts)"
    return container.health or container.status
