"""`--rehearse`: run an environment against a twin of its cloud on this machine.

The environment becomes ``<name>-rehearsal`` (its own hosts, state directory, ledger
records and droplet names, so nothing mixes with the real one), its cloud's API is
the DigitalOcean twin (stagecraft_twins.digitalocean, started here as a process when
none runs; stagecraft never imports it), its edges use the environment's own CA (no
public CA reaches the twin's droplets), and images go to the hosts over SSH (the
project's registry is left alone). Secrets still come from the real environment's
secrets provider: a rehearsal runs what production would run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stagecraft.config.schema import ResolvedEnvironment
from stagecraft.errors import ConfigError, EnvironmentMissing

#: Suffix of a rehearsed environment's name.
SUFFIX = "-rehearsal"
#: Where the twin keeps its state, unless STAGECRAFT_DO_TWIN_DIR names another place.
TWIN_DIR = Path(".stagecraft") / "rehearsal" / "digitalocean"
TWIN_DIR_VARIABLE = "STAGECRAFT_DO_TWIN_DIR"
#: The environment variable the rehearsed environment's token reference reads.
TOKEN_VARIABLE = "STAGECRAFT_REHEARSAL_DO_TOKEN"
START_TIMEOUT = 30.0


def rehearse(env: ResolvedEnvironment, project_dir: Path,
             log: Callable[[str], None] | None = None) -> ResolvedEnvironment:
    """``env`` pointed at a running twin of its cloud (started if needed)."""
    cloud = env.providers.cloud
    if cloud.kind != "digitalocean":
        raise ConfigError(
            f"environment {env.name} uses cloud `{cloud.kind}`: only DigitalOcean "
            "environments can be rehearsed",
            hint="drop --rehearse; cloud `local` is a rehearsal by itself")
    if env.name.endswith(SUFFIX):
        return env
    name = f"{env.name}{SUFFIX}"
    if len(name) > 63:
        raise ConfigError(f"environment {env.name}: its rehearsal's name {name} is longer "
                          "than a DNS label (63)", hint="use a shorter environment name")
    twin = ensure_twin(Path(os.environ.get(TWIN_DIR_VARIABLE) or project_dir / TWIN_DIR), log)
    os.environ[TOKEN_VARIABLE] = twin["token"]
    providers = env.providers.model_copy(update={
        "cloud": cloud.model_copy(update={
            "api_url": twin["url"], "token": f"${{env:{TOKEN_VARIABLE}}}",
            "rehearsal": True}),
        "secrets": _same_secrets(env),
    })
    tls = env.tls.model_copy(update={"mode": "local"}) if env.tls.mode == "acme" else env.tls
    project = env.project.model_copy(update={"registry": None})
    return env.model_copy(update={"name": name, "providers": providers, "tls": tls,
                                  "project": project})


def _same_secrets(env: ResolvedEnvironment) -> Any:
    """The real environment's secrets provider, with ``{env}`` in its path filled in
    with the real name (the rehearsal's name would find no file)."""
    secrets = env.providers.secrets
    path = getattr(secrets, "path", None)
    if isinstance(path, str) and "{env}" in path:
        return secrets.model_copy(update={"path": path.replace("{env}", env.name)})
    return secrets


def ensure_twin(directory: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """twin.json of a twin that answers, started in ``directory`` when none does."""
    directory = directory.resolve()
    found = _answering(directory)
    if found is not None:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    if log is not None:
        log(f"starting the DigitalOcean twin in {directory}")
    (directory / "twin.json").unlink(missing_ok=True)
    with open(directory / "twin.log", "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "stagecraft_twins.digitalocean", "serve",
             "--state-dir", str(directory)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = _answering(directory)
        if found is not None:
            return found
        if process.poll() is not None:
            break
        time.sleep(0.2)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    tail = (directory / "twin.log").read_text(errors="replace")[-600:]
    raise EnvironmentMissing(
        f"the DigitalOcean twin did not start in {directory}: {tail.strip() or 'no output'}",
        hint="see twin.log there; the twin needs Docker (`stagecraft doctor`)")


def _answering(directory: Path) -> dict[str, Any] | None:
    try:
        twin = json.loads((directory / "twin.json").read_text())
        request = urllib.request.Request(
            f"{twin['url']}/account", headers={"Authorization": f"Bearer {twin['token']}"})
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return twin if response.status == 200 else None
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None
