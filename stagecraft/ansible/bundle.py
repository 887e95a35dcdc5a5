"""Write a RunRequest to disk as an ansible-runner private_data_dir (a "run bundle").

The filesystem is the interface: everything a run needs sits under
``<project>/.stagecraft/runs/<run id>/`` in ansible-runner's own layout, so an
operator can read it, and ansible-runner finds it without extra arguments::

    run.json                 what was asked (no secret values), when
    run.lock                 flock held from prepare() until the run ends
    stop                     created to stop the run before its next task
    ansible.cfg              our (empty) config, so ~/.ansible.cfg is never read
    inventory/hosts.json     the inventory
    env/extravars            extra variables (JSON)
    env/secret_extravars     secret extra variables (0600; deleted when the run ends)
    env/envvars              the ANSIBLE_* settings and variables stagecraft sets
    env/settings             ansible-runner settings
    env/cmdline              ansible-playbook options (limit, tags, check, forks, -v)
    project -> <playbooks>   symlink to the directory holding the playbook
    artifacts/<run id>/      written by ansible-runner: rc, status, job_events/

Every file is written to a temporary name and renamed; the whole bundle is
built in a hidden directory and renamed into place, so a half-written bundle
is never seen by rotation or by another process.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from stagecraft import paths
from stagecraft.ansible.request import _RUN_ID, RunRequest, secret_strings
from stagecraft.errors import EnvironmentMissing, StateError
from stagecraft.fsutil import write_atomic
from stagecraft.hosts import ssh
from stagecraft.redact import Redactor

DEFAULT_KEEP_RUNS = 20

LOCK_FILE = "run.lock"
MANIFEST_FILE = "run.json"
SECRETS_FILE = "env/secret_extravars"
STOP_FILE = "stop"

# Our callback plugin (stagecraft_stop) that stops a run between tasks.
CALLBACK_PLUGINS_DIR = Path(__file__).resolve().parent / "callback_plugins"


class RunLock:
    """An exclusive flock on ``<run>/run.lock``: "this run is in progress".

    flock (not fcntl/POSIX locks) so the lock belongs to the open file: a
    second open in the same process also sees it held, and it dies with the
    process, so a crashed run never looks in progress forever.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when someone else holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()


@dataclass(frozen=True)
class Bundle:
    """A prepared run directory, ready for :func:`stagecraft.ansible.runner.run`."""

    run_id: str
    root: Path
    """The private_data_dir: .stagecraft/runs/<run id>/."""
    playbook: str
    """The playbook's file name inside root/project/."""
    playbook_path: Path
    """Where the playbook really lives."""
    hosts: tuple[str, ...]
    """Hosts of the inventory, for the progress view (empty when --limit is set)."""
    env_allowlist: tuple[str, ...]
    """os.environ names passed through to Ansible."""
    envvars: Mapping[str, str]
    """Everything stagecraft sets in Ansible's environment (also in env/envvars)."""
    secrets_file: Path | None
    check: bool
    """Check mode (--dry-run): nothing on a host is changed."""
    redactor: Redactor = field(repr=False, compare=False)
    lock: RunLock = field(repr=False, compare=False)

    @property
    def stop_file(self) -> Path:
        """Creating this file stops the run before its next task starts."""
        return self.root / STOP_FILE

    @property
    def artifacts_dir(self) -> Path:
        """ansible-runner's artifacts/<ident>/ for this run (rc, status, job_events/)."""
        return self.root / "artifacts" / self.run_id

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment Ansible gets: allowlisted names from ``base`` plus ours.

        PATH is prefixed with the directory of the running Python, so the
        ansible-playbook next to stagecraft is used even when the venv is not
        activated.
        """
        base = os.environ if base is None else base
        env = {name: base[name] for name in self.env_allowlist if name in base}
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
        env.update(self.envvars)
        return env

    def discard_secrets(self) -> None:
        """Delete the secret extravars file (the run is over or will not happen)."""
        if self.secrets_file is not None:
            self.secrets_file.unlink(missing_ok=True)

    def release(self) -> None:
        """Drop the in-progress lock; rotation may now delete this run."""
        self.lock.release()


def _resolve_playbook(playbook: str | Path) -> Path:
    candidate = Path(playbook)
    if not candidate.is_absolute():
        try:
            candidate = paths.playbooks_dir() / candidate
        except FileNotFoundError as exc:
            raise EnvironmentMissing(
                str(exc), hint="reinstall stagecraft; its collection's playbooks are part of the package"
            ) from None
    if not candidate.is_file():
        raise EnvironmentMissing(
            f"playbook not found: {candidate}",
            hint="reinstall stagecraft, or check the playbook name",
        )
    return candidate


def ansible_settings(request: RunRequest, root: Path) -> dict[str, str]:
    """The ANSIBLE_* environment that makes a run fast, safe and readable."""
    try:
        collections = paths.collections_dir()
    except FileNotFoundError as exc:
        raise EnvironmentMissing(
            str(exc), hint="reinstall stagecraft; its collections/ are part of the package"
        ) from None

    settings = {
        # Our own (empty) config file: a user's ./ansible.cfg or ~/.ansible.cfg
        # must not change what a deploy does.
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_PIPELINING": "True",
        # Key, pinned host keys and control sockets as for every other ssh call,
        # so a playbook reuses the connection the probe opened.
        **ssh.ansible_env(request.ssh.private_key_file, request.ssh.known_hosts_file),
        # The playbooks name roles by FQCN (stagecraft.platform.rollout). The
        # ansible package's own collections (community.docker, ...) are still
        # found on sys.path; ~/.ansible/collections is not consulted.
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # Events carry the display text; keep it free of colour codes, and
        # never put task arguments (which may hold secrets) into it.
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "False",
        # A broken inventory is an error, not a run against zero hosts.
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        # Stop between tasks when <run>/stop exists (see callback_plugins/).
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_PLUGINS_DIR),
        "ANSIBLE_CALLBACKS_ENABLED": "stagecraft_stop",
        "STAGECRAFT_STOP_FILE": str(root / STOP_FILE),
    }
    if request.ssh.user is not None:
        settings["ANSIBLE_REMOTE_USER"] = request.ssh.user
    return settings


def _cmdline(request: RunRequest, secrets_file: Path | None) -> str:
    """ansible-playbook options, in env/cmdline (ansible-runner adds -i, -e @extravars)."""
    args: list[str] = []
    if request.limit:
        args += ["--limit", request.limit]
    if request.tags:
        args += ["--tags", ",".join(request.tags)]
    if request.skip_tags:
        args += ["--skip-tags", ",".join(request.skip_tags)]
    if request.check:
        args.append("--check")
    args += ["--forks", str(request.forks)]
    if request.verbosity:
        args.append("-" + "v" * request.verbosity)
    if secrets_file is not None:
        args += ["-e", f"@{secrets_file}"]
    return shlex.join(args)


def prepare(
    request: RunRequest, runs_dir: Path, *, keep: int = DEFAULT_KEEP_RUNS
) -> Bundle:
    """Write ``request`` as a run bundle in ``runs_dir/<run id>/`` and rotate old runs.

    The returned Bundle holds the run's lock until :func:`runner.run` ends or
    :meth:`Bundle.release` is called; rotation never deletes a locked run.
    Raises StateError when the run directory exists or cannot be written,
    EnvironmentMissing when the playbook or bundled content is missing, and
    ValueError when a secret value appears in non-secret input.
    """
    runs_dir = Path(runs_dir).absolute()
    playbook_path = _resolve_playbook(request.playbook)
    final = runs_dir / request.run_id
    if final.exists() or final.is_symlink():
        raise StateError(
            f"run directory already exists: {final}",
            hint="every run needs a new run id",
        )
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        staging = runs_dir / f".{request.run_id}.tmp-{os.getpid()}"
        staging.mkdir(mode=0o700)
    except OSError as exc:
        raise StateError(f"cannot create the run directory in {runs_dir}: {exc}") from None

    redactor = Redactor(secret_strings(request.secret_extravars))
    lock = RunLock(staging / LOCK_FILE)
    try:
        lock.acquire()
        ssh.make_control_dir()
        final_root = final  # paths written into files name the final location
        secrets_file = final_root / SECRETS_FILE if request.secret_extravars else None
        managed = ansible_settings(request, final_root)
        overridden = sorted(set(request.envvars) & set(managed))
        if overridden:
            raise ValueError(f"envvars may not set what the driver manages: {overridden}")
        envvars = {**request.envvars, **managed}

        manifest = {
            "run_id": request.run_id,
            "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "playbook": str(playbook_path),
            "limit": request.limit,
            "tags": list(request.tags),
            "skip_tags": list(request.skip_tags),
            "check": request.check,
            "forks": request.forks,
            "env_allowlist": list(request.allowed_env_names()),
            "secret_extravars": sorted(request.secret_extravars),
        }
        files = {
            MANIFEST_FILE: json.dumps(manifest, indent=2) + "\n",
            "ansible.cfg": (
                "# Written by stagecraft. Settings are in env/envvars; this file exists\n"
                "# so that no ./ansible.cfg or ~/.ansible.cfg changes the run.\n"
                "[defaults]\n"
            ),
            "inventory/hosts.json": json.dumps(dict(request.inventory), indent=2, sort_keys=True) + "\n",
            "env/extravars": json.dumps(dict(request.extravars), indent=2, sort_keys=True) + "\n",
            "env/envvars": json.dumps(envvars, indent=2, sort_keys=True) + "\n",
            "env/settings": json.dumps(
                {
                    # We write our own redacted stdout; runner's copy would not be.
                    "suppress_output_file": True,
                    # How often runner polls cancellation (seconds).
                    "pexpect_timeout": 0.5,
                    **({"job_timeout": math.ceil(request.timeout)} if request.timeout else {}),
                },
                indent=2,
            )
            + "\n",
            "env/cmdline": _cmdline(request, secrets_file) + "\n",
        }
        for name, text in files.items():
            if redactor.contains(text):
                raise ValueError(
                    f"a secret value appears in {name}: pass secrets only as secret_extravars"
                )
        (staging / "inventory").mkdir(mode=0o700)
        (staging / "env").mkdir(mode=0o700)
        for name, text in files.items():
            write_atomic(staging / name, text, mode=0o600)
        if secrets_file is not None:
            write_atomic(
                staging / SECRETS_FILE, json.dumps(dict(request.secret_extravars)) + "\n", mode=0o600
            )
        # A link, not a copy: the bundled playbooks are read-only package data,
        # and run.json records which file ran.
        (staging / "project").symlink_to(playbook_path.parent, target_is_directory=True)
        os.rename(staging, final)
    except BaseException:
        lock.release()
        shutil.rmtree(staging, ignore_errors=True)
        raise

    lock.path = final / LOCK_FILE
    bundle = Bundle(
        run_id=request.run_id,
        root=final,
        playbook=playbook_path.name,
        playbook_path=playbook_path,
        hosts=() if request.limit else request.hosts,
        env_allowlist=request.allowed_env_names(),
        envvars=MappingProxyType(envvars),
        secrets_file=secrets_file,
        check=request.check,
        redactor=redactor,
        lock=lock,
    )
    rotate_runs(runs_dir, keep=keep, protect=(request.run_id,))
    return bundle


def _created(run_dir: Path) -> float:
    """When a run was prepared (from run.json; the directory's mtime otherwise)."""
    try:
        created = json.loads((run_dir / MANIFEST_FILE).read_text())["created"]
        return datetime.fromisoformat(created).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return run_dir.stat().st_mtime
        except OSError:
            return 0.0


def rotate_runs(
    runs_dir: Path, keep: int = DEFAULT_KEEP_RUNS, *, protect: Iterable[str] = ()
) -> list[Path]:
    """Delete all but the newest ``keep`` runs; never one in progress or in ``protect``.

    Also deletes secret files left behind by runs that ended without cleaning
    up (a killed process). Returns the run directories removed.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    protected = set(protect)
    try:
        runs = [
            entry
            for entry in Path(runs_dir).iterdir()
            if _RUN_ID.match(entry.name) and entry.is_dir() and not entry.is_symlink()
        ]
    except FileNotFoundError:
        return []
    runs.sort(key=lambda d: (_created(d), d.name), reverse=True)

    removed: list[Path] = []
    for index, run_dir in enumerate(runs):
        if run_dir.name in protected:
            continue
        lock = RunLock(run_dir / LOCK_FILE)
        try:
            if not lock.acquire():
                continue  # in progress
        except OSError:
            continue
        try:
            if index >= keep:
                shutil.rmtree(run_dir, ignore_errors=True)
                removed.append(run_dir)
            else:
                (run_dir / SECRETS_FILE).unlink(missing_ok=True)
        finally:
            lock.release()
    return removed
