"""The private mesh's real programs, built on this machine: ``tailscale`` and
``tailscaled`` (module ``tailscale.com``) and ``headscale`` (``github.com/juanfont/headscale``).

No package registry this kind of machine reaches ships them, but the Go module proxy
serves their source, so :func:`ensure_mesh_binaries` builds them with ``go install``
at the pinned versions below, once per machine, and returns their paths:

- static binaries (``CGO_ENABLED=0``, ``-trimpath``, stripped), so they run in the
  Debian host containers and on the runtime image whatever C library they have;
- ``GOTOOLCHAIN=local``: the Go found here builds them or we say it is too old; go is
  never allowed to download another toolchain;
- kept in ``cache_dir()/mesh-binaries/<name>-<version>-<os>-<arch>-<recipe>/`` (beside
  the images' locks and logs) with a ``build.json`` saying what built them and how long
  it took; the directory name covers every input of the build, so a changed recipe
  builds anew and an unchanged one is reused forever;
- one build at a time per program set, under an exclusive file lock (the second
  process waits, then finds the binaries); each build goes into a temporary
  directory that is renamed into place only when complete, so a reader never sees
  half a build.

Errors: :class:`~stagecraft.errors.EnvironmentMissing` when Go is missing or older
than :data:`MIN_GO_VERSION`, or the module proxy (or the checksum database) cannot be
reached; :class:`~stagecraft.errors.CommandFailed` when the build itself fails. The
build's output goes to ``cache_dir()/mesh-<name>-build.log``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stagecraft import execs, steps
from stagecraft.errors import CommandFailed, EnvironmentMissing
from stagecraft.fsutil import exclusive_lock, write_atomic
from stagecraft.providers.cloud.local.dockercli import tail
from stagecraft.providers.cloud.local.host_image import cache_dir

Log = Callable[[str], None]

TAILSCALE_MODULE = "tailscale.com"
#: The newest tailscale.com this machine kind's Go (1.26) builds; v1.104 needs a newer Go.
TAILSCALE_VERSION = "v1.102.5"
HEADSCALE_MODULE = "github.com/juanfont/headscale"
#: The newest Headscale the module proxy serves here (its go.mod says go 1.26.5).
HEADSCALE_VERSION = "v0.29.3"

#: The oldest Go that builds both: tailscale.com v1.102.5's go.mod says ``go 1.26.6``
#: (Headscale v0.29.3's says 1.26.5). With GOTOOLCHAIN=local an older go refuses.
MIN_GO_VERSION = (1, 26, 6)

#: Where Go is looked for after ``STAGECRAFT_GO`` and PATH: the go.dev tarball's place.
DEFAULT_GO = Path("/usr/local/go/bin/go")

#: Bump when the build below changes what it makes (flags, environment).
_RECIPE_VERSION = 1
#: A cold build of tailscale took 4.5 min here on 2 busy cores: leave room.
_BUILD_TIMEOUT = 3600.0
_GO_HINT = (f"install Go {'.'.join(map(str, MIN_GO_VERSION))} or newer from https://go.dev/dl/ "
            f"into /usr/local/go (Debian's golang-go is older), or set STAGECRAFT_GO to a go "
            "binary that is")
#: What go prints when it cannot fetch a module (network, proxy, checksum database).
_FETCH_FAILURES = ("dial tcp", "no such host", "connection refused", "i/o timeout",
                   "tls handshake timeout", "network is unreachable", "403 forbidden",
                   "404 not found", "410 gone", "502 bad gateway", "503 service unavailable",
                   "module lookup disabled", "verifying module", "sum.golang.org",
                   "unrecognized import path", "reading https://")


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ProgramSet:
    """Programs of one Go module at one version, built by one ``go install``."""

    name: str  # names the cache directory, lock and log: "tailscale"
    module: str
    version: str
    packages: tuple[str, ...]  # below the module: "cmd/tailscaled"
    ldflags: tuple[str, ...] = ()

    @property
    def programs(self) -> tuple[str, ...]:
        """The executables ``go install`` writes: the last element of each package."""
        return tuple(package.rsplit("/", 1)[-1] for package in self.packages)

    def targets(self) -> list[str]:
        """``go install`` arguments: ``tailscale.com/cmd/tailscale@v1.102.5``, ..."""
        return [f"{self.module}/{package}@{self.version}" for package in self.packages]

    def key(self, goos: str, goarch: str) -> str:
        """The cache directory's name: every input of the build, readable where it can be."""
        recipe = {"module": self.module, "version": self.version,
                  "packages": list(self.packages), "ldflags": list(self.ldflags),
                  "goos": goos, "goarch": goarch, "cgo": False, "trimpath": True,
                  "recipe": _RECIPE_VERSION}
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.name}-{self.version}-{goos}-{goarch}-{digest}"


def _stamp(version: str) -> tuple[str, ...]:
    """tailscale's own release builds stamp their version at link time; ``go install``
    alone would leave ``1.102.5-ERR-BuildInfo`` (no VCS data in a module zip)."""
    bare = version.lstrip("v")
    return (f"-X tailscale.com/version.longStamp={bare}",
            f"-X tailscale.com/version.shortStamp={bare}")


TAILSCALE = ProgramSet("tailscale", TAILSCALE_MODULE, TAILSCALE_VERSION,
                       ("cmd/tailscale", "cmd/tailscaled"),
                       ("-s", "-w", *_stamp(TAILSCALE_VERSION)))
#: Headscale reads its version from the build info, which ``go install m@v`` fills.
HEADSCALE = ProgramSet("headscale", HEADSCALE_MODULE, HEADSCALE_VERSION,
                       ("cmd/headscale",), ("-s", "-w"))
PROGRAM_SETS = (TAILSCALE, HEADSCALE)


@dataclass(frozen=True)
class MeshBinaries:
    """Paths of the built programs (static Linux executables)."""

    tailscale: Path
    tailscaled: Path
    headscale: Path


@dataclass(frozen=True)
class GoToolchain:
    """The Go that builds the binaries."""

    path: Path
    version: str  # as ``go env GOVERSION`` says it: "go1.26.8"
    env: dict[str, str]  # GOPROXY, GOMODCACHE, GOHOSTOS, GOHOSTARCH, ...


# ----------------------------------------------------------------- the cache


def cache_root() -> Path:
    """``cache_dir()/mesh-binaries``: one directory per built program set."""
    return cache_dir() / "mesh-binaries"


def host_platform() -> tuple[str, str]:
    """This machine's GOOS and GOARCH, without asking Go (which may be missing): the
    binaries are built for the machine whose Docker Engine runs the containers."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "i686": "386", "i386": "386", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return {"win32": "windows"}.get(sys.platform, sys.platform), arch


def program_dir(programs: ProgramSet) -> Path:
    """Where ``programs`` are (or will be) kept."""
    return cache_root() / programs.key(*host_platform())


def cached(programs: ProgramSet) -> Path | None:
    """The directory of ``programs`` if a complete build is there, else None."""
    directory = program_dir(programs)
    complete = (directory / "build.json").is_file() and all(
        os.access(directory / name, os.X_OK) for name in programs.programs)
    return directory if complete else None


def build_record(programs: ProgramSet) -> dict | None:
    """What ``build.json`` says of a cached build (Go version, seconds), or None."""
    directory = cached(programs)
    if directory is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        return json.loads((directory / "build.json").read_text())
    return None


def cached_binaries() -> MeshBinaries | None:
    """The binaries if every one is built already; never builds."""
    tailscale, headscale = cached(TAILSCALE), cached(HEADSCALE)
    if tailscale is None or headscale is None:
        return None
    return MeshBinaries(tailscale / "tailscale", tailscale / "tailscaled",
                        headscale / "headscale")


# ------------------------------------------------------------------ building


def ensure_mesh_binaries(log: Log | None = None) -> MeshBinaries:
    """Return the paths of tailscale, tailscaled and headscale, building whichever is
    not in the cache yet (tailscale ≈ 4–5 min, headscale ≈ 2 min on 2 cores, cold).

    Raises EnvironmentMissing when Go is missing or too old or the module proxy cannot
    be reached, CommandFailed when a build fails (its log's path in the message).
    """
    log = log or _quiet
    tailscale = ensure_programs(TAILSCALE, log)
    headscale = ensure_programs(HEADSCALE, log)
    return MeshBinaries(tailscale / "tailscale", tailscale / "tailscaled",
                        headscale / "headscale")


def ensure_headscale_binary(log: Log | None = None) -> Path:
    """The headscale executable, built if needed (what the Headscale image needs)."""
    return ensure_programs(HEADSCALE, log or _quiet) / "headscale"


def ensure_programs(programs: ProgramSet, log: Log) -> Path:
    """The directory holding ``programs``, built there first if it is not complete."""
    found = cached(programs)
    if found is not None:
        return found
    go = find_go()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = programs.key(*host_platform())
    lock = root / f"{key}.lock"
    with exclusive_lock(lock, f"waiting for another process that is building {programs.name} "
                        f"{programs.version} ({lock})", log):
        found = cached(programs)  # built by the process we waited for
        if found is not None:
            return found
        _remove_leftovers(root, key)
        with steps.step(log, f"building {', '.join(programs.programs)} {programs.version} "
                        f"with {go.version} (a few minutes; log: {_logfile(programs)})"):
            _build(programs, go, root / key)
    return root / key


def _remove_leftovers(root: Path, key: str) -> None:
    """Temporary directories of builds that were killed (we hold the lock: none runs),
    and a final directory that lost files."""
    for path in root.glob(f".{key}.*"):
        shutil.rmtree(path, ignore_errors=True)
    if (root / key).exists():
        shutil.rmtree(root / key, ignore_errors=True)


def _logfile(programs: ProgramSet) -> Path:
    return cache_dir() / f"mesh-{programs.name}-build.log"


def _build(programs: ProgramSet, go: GoToolchain, final: Path) -> None:
    goos, goarch = host_platform()
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    gobin = work / "bin"
    gobin.mkdir()
    logfile = _logfile(programs)
    env = _build_env(go, gobin, goos, goarch)
    started = time.monotonic()
    try:
        with open(logfile, "w") as out:
            # 1. The module itself, alone: if the proxy cannot be reached, this says so
            # plainly, and it puts the version in the local module cache (see _goproxy).
            _go(go, ["mod", "download", "-json", f"{programs.module}@{programs.version}"],
                env=env, cwd=work, out=out, programs=programs, logfile=logfile)
            # 2. The programs, with their dependencies as the module's go.sum pins them.
            _go(go, ["install", "-trimpath", f"-ldflags={' '.join(programs.ldflags)}",
                     *programs.targets()],
                env=env, cwd=work, out=out, programs=programs, logfile=logfile)
        seconds = time.monotonic() - started
        record = {
            "module": programs.module, "version": programs.version,
            "programs": list(programs.programs), "go": go.version, "goos": goos,
            "goarch": goarch, "ldflags": list(programs.ldflags),
            "seconds": round(seconds, 1),
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "sha256": {},
        }
        for name in programs.programs:
            binary = gobin / name
            if not binary.is_file():
                raise CommandFailed(
                    f"go install of {programs.module}@{programs.version} wrote no {name}",
                    argv=[str(go.path), "install", *programs.targets()], returncode=0,
                    hint=f"read {logfile}")
            os.chmod(binary, 0o755)
            shutil.move(binary, work / name)
            record["sha256"][name] = _sha256(work / name)
        gobin.rmdir()
        write_atomic(work / "build.json", json.dumps(record, indent=2) + "\n")
        os.chmod(work, 0o755)  # mkdtemp made it 0700: other users of the machine read it
        os.rename(work, final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _build_env(go: GoToolchain, gobin: Path, goos: str, goarch: str) -> dict[str, str]:
    env = {**os.environ}
    for name in ("GOFLAGS", "GOEXPERIMENT"):  # a user's build settings must not leak in
        env.pop(name, None)
    env.update({
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOOS": goos,
        "GOARCH": goarch,
        "GOBIN": str(gobin),
        "GOWORK": "off",
        "GOPROXY": _goproxy(go),
    })
    return env


def _goproxy(go: GoToolchain) -> str:
    """The user's GOPROXY behind the local module cache.

    ``go install m@v`` also asks for the module's version list, only to look for a
    deprecation notice in the newest go.mod, and fails when the list is refused. Some
    mirrors (this machine kind's among them) refuse lists yet serve every version.
    The module cache is laid out as a proxy: first in line, it answers that list with
    the versions already downloaded (step 1 of the build put ours there); for anything
    it lacks it says "not found", and go asks the next proxy. Every other module is
    pinned by the built module's go.sum, so no other list is asked for.
    """
    proxy = go.env.get("GOPROXY") or "https://proxy.golang.org,direct"
    modcache = go.env.get("GOMODCACHE")
    if proxy == "off" or not modcache or "file://" in proxy:
        return proxy
    return f"file://{Path(modcache) / 'cache' / 'download'},{proxy}"


def _go(go: GoToolchain, args: list[str], *, env: dict[str, str], cwd: Path, out,
        programs: ProgramSet, logfile: Path) -> None:
    argv = [str(go.path), *args]
    out.write(f"$ {execs.render_argv(['go', *args])}\n")
    out.flush()

    def write(_stream: str, line: str) -> None:
        out.write(line + "\n")
        out.flush()
        steps.note(line)

    try:
        proc = execs.run(argv, env=env, cwd=cwd, timeout=_BUILD_TIMEOUT, on_line=write,
                         check=False)
    except CommandFailed as exc:  # the timeout
        raise CommandFailed(
            f"cannot build {programs.name} {programs.version}: `go {args[0]}` did not "
            f"finish within {_BUILD_TIMEOUT:g} s", argv=argv, returncode=None,
            output_tail=exc.output_tail,
            hint=f"read {logfile}; check the load of this machine and run it again") from exc
    if proc.returncode == 0:
        return
    output = "\n".join(part for part in (proc.stdout, proc.stderr) if part)
    last = _last_error(output)
    what = f"{programs.module}@{programs.version}"
    if any(marker in output.lower() for marker in _FETCH_FAILURES):
        raise EnvironmentMissing(
            f"cannot build {programs.name}: go cannot download {what} or its dependencies "
            f"from the module proxy ({go.env.get('GOPROXY') or 'default'}): {last}",
            hint=f"check that this machine reaches the Go module proxy and sum.golang.org "
            f"(or set GOPROXY/GOSUMDB to ones it reaches); `GOTOOLCHAIN=local go mod "
            f"download {what}` shows the error; full output in {logfile}")
    if "requires go >=" in output or "toolchain not available" in output:
        raise EnvironmentMissing(
            f"cannot build {programs.name}: {go.path} ({go.version}) is too old for {what}: "
            f"{last}", hint=_GO_HINT)
    raise CommandFailed(
        f"cannot build {programs.name} {programs.version}: `go {args[0]}` exited "
        f"{proc.returncode}: {last}",
        argv=argv, returncode=proc.returncode, output_tail=tail(output),
        hint=f"read {logfile}")


def _last_error(output: str) -> str:
    """The line of go's output that says what went wrong (``go: ...`` last), else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("go: ") or '"Error"' in line:
            return line
    return lines[-1] if lines else "no output"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------ Go


def find_go() -> GoToolchain:
    """The Go that builds the binaries: ``STAGECRAFT_GO``, else ``go`` on PATH, else
    /usr/local/go/bin/go; EnvironmentMissing when none is there or it is too old."""
    override = os.environ.get("STAGECRAFT_GO")
    if override:
        candidates = [Path(override)]
    else:
        on_path = shutil.which("go")
        candidates = [Path(on_path)] if on_path else []
        candidates.append(DEFAULT_GO)
    path = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    if path is None:
        where = f"STAGECRAFT_GO={override} is not an executable" if override else (
            "no `go` on PATH nor at /usr/local/go/bin/go")
        raise EnvironmentMissing(
            "cannot build the mesh binaries (tailscale, tailscaled, headscale): Go is not "
            f"installed ({where})", hint=_GO_HINT)
    env = _go_env(path)
    version = env.get("GOVERSION", "")
    number = go_version_tuple(version)
    if number < MIN_GO_VERSION:
        need = ".".join(map(str, MIN_GO_VERSION))
        raise EnvironmentMissing(
            f"cannot build the mesh binaries: {path} is {version or 'of unknown version'}; "
            f"tailscale.com {TAILSCALE_VERSION} needs Go >= {need} (stagecraft builds with "
            "GOTOOLCHAIN=local and never lets go download a toolchain)", hint=_GO_HINT)
    return GoToolchain(path, version, env)


def _go_env(path: Path) -> dict[str, str]:
    names = ["GOVERSION", "GOPROXY", "GOMODCACHE", "GOSUMDB", "GOHOSTOS", "GOHOSTARCH"]
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOWORK": "off"}
    try:
        # From the cache dir: a go.mod or go.work in the caller's directory must not
        # make go choose another toolchain.
        proc = execs.run([str(path), "env", "-json", *names], env=env, cwd=cache_dir(),
                         timeout=60, check=False)
    except CommandFailed:  # timed out
        return {}
    if proc.returncode != 0:
        if "toolchain" in proc.stderr or "requires go" in proc.stderr:
            return {}  # too old for something here: reported as "of unknown version"
        raise CommandFailed(f"cannot ask {path} its settings: `go env` exited "
                            f"{proc.returncode}: {tail(proc.stderr, 300)}",
                            argv=list(proc.argv), returncode=proc.returncode,
                            output_tail=tail(proc.stderr), hint=_GO_HINT)
    with contextlib.suppress(ValueError):
        data = json.loads(proc.stdout)
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}


def go_version_tuple(version: str) -> tuple[int, ...]:
    """``(1, 26, 8)`` from ``go1.26.8``; ``(1, 26)`` from ``go1.26rc1``; ``()`` if none."""
    match = re.search(r"go(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        return ()
    return tuple(int(part) for part in match.groups() if part is not None)


def go_status() -> tuple[GoToolchain | None, EnvironmentMissing | None]:
    """The usable Go, or why there is none (for the doctor, which must not raise)."""
    try:
        return find_go(), None
    except EnvironmentMissing as exc:
        return None, exc


__all__ = [
    "DEFAULT_GO", "HEADSCALE", "HEADSCALE_MODULE", "HEADSCALE_VERSION", "MIN_GO_VERSION",
    "PROGRAM_SETS", "TAILSCALE", "TAILSCALE_MODULE", "TAILSCALE_VERSION",
    "GoToolchain", "MeshBinaries", "ProgramSet",
    "build_record", "cache_root", "cached", "cached_binaries", "ensure_headscale_binary",
    "ensure_mesh_binaries", "ensure_programs", "find_go", "go_status", "go_version_tuple",
    "host_platform", "program_dir",
]
