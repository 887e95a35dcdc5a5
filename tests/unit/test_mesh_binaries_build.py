"""The mesh binaries' builder (stagecraft/providers/cloud/local/mesh_binaries.py) with a
stand-in ``go`` that records how it was called, and the real Go where one is installed
(only for what fails fast: a proxy nobody answers)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from stagecraft.errors import EnvironmentMissing
from stagecraft.providers.cloud.local import mesh_binaries
from stagecraft.providers.cloud.local.mesh_binaries import (
    HEADSCALE,
    TAILSCALE,
    ProgramSet,
    go_version_tuple,
)

#: A stand-in for go: `env -json` answers from FAKE_GO_VERSION; `mod download` and
#: `install` append their argv and environment to FAKE_GO_CALLS, and `install` writes
#: one executable per target into $GOBIN (after FAKE_GO_SLEEP seconds). FAKE_GO_FAIL
#: makes `mod download` fail with that text.
FAKE_GO = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, sys
    args = sys.argv[1:]
    if args[:2] == ["env", "-json"]:
        print(json.dumps({{"GOVERSION": os.environ.get("FAKE_GO_VERSION", "go1.26.8"),
                          "GOPROXY": "https://proxy.example,direct",
                          "GOMODCACHE": os.environ["FAKE_GO_MODCACHE"]}}))
        sys.exit(0)
    with open(os.environ["FAKE_GO_CALLS"], "a") as out:
        keep = ("GOTOOLCHAIN", "CGO_ENABLED", "GOPROXY", "GOBIN", "GOOS", "GOARCH", "GOFLAGS")
        out.write(json.dumps({{"args": args, "cwd": os.getcwd(),
                              "env": {{k: os.environ.get(k) for k in keep}}}}) + "\\n")
    if args[:2] == ["mod", "download"] and os.environ.get("FAKE_GO_FAIL"):
        print(os.environ["FAKE_GO_FAIL"], file=sys.stderr)
        sys.exit(1)
    if args[0] == "install":
        import time
        time.sleep(float(os.environ.get("FAKE_GO_SLEEP", "0")))
        for target in args:
            if "@" in target:
                name = target.split("@")[0].rsplit("/", 1)[-1]
                path = os.path.join(os.environ["GOBIN"], name)
                with open(path, "w") as f:
                    f.write("#!/bin/sh\\necho " + name + "\\n")
    """)


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    go = tmp_path / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("STAGECRAFT_GO", str(go))
    monkeypatch.setenv("STAGECRAFT_IMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_GO_CALLS", str(calls))
    monkeypatch.setenv("FAKE_GO_MODCACHE", str(tmp_path / "modcache"))
    monkeypatch.delenv("FAKE_GO_FAIL", raising=False)
    return calls


def calls_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_go_versions_are_read_as_numbers() -> None:
    assert go_version_tuple("go1.26.8") == (1, 26, 8)
    assert go_version_tuple("go1.26rc1") == (1, 26)
    assert go_version_tuple("devel go1.27-abcdef") == (1, 27)
    assert go_version_tuple("") == ()
    # 1.26rc1 is older than the oldest Go that builds tailscale.com v1.102.5.
    assert go_version_tuple("go1.26rc1") < mesh_binaries.MIN_GO_VERSION <= (1, 26, 8)


def test_the_cache_key_names_the_version_and_changes_with_every_build_input() -> None:
    key = TAILSCALE.key("linux", "amd64")
    assert key.startswith("tailscale-v1.102.5-linux-amd64-") and key == TAILSCALE.key(
        "linux", "amd64")
    other_version = ProgramSet(TAILSCALE.name, TAILSCALE.module, "v1.102.4",
                               TAILSCALE.packages, TAILSCALE.ldflags)
    other_flags = ProgramSet(TAILSCALE.name, TAILSCALE.module, TAILSCALE.version,
                             TAILSCALE.packages, ("-s",))
    keys = {key, TAILSCALE.key("linux", "arm64"), other_version.key("linux", "amd64"),
            other_flags.key("linux", "amd64")}
    assert len(keys) == 4
    assert TAILSCALE.programs == ("tailscale", "tailscaled")
    assert HEADSCALE.targets() == ["github.com/juanfont/headscale/cmd/headscale@v0.29.3"]


def test_tailscale_is_stamped_with_its_version() -> None:
    # Without the stamp, `tailscale version` says 1.102.5-ERR-BuildInfo.
    assert "-X tailscale.com/version.longStamp=1.102.5" in TAILSCALE.ldflags
    assert "-X tailscale.com/version.shortStamp=1.102.5" in TAILSCALE.ldflags


def test_a_build_installs_atomically_and_is_reused(fake_go: Path) -> None:
    binaries = mesh_binaries.ensure_mesh_binaries()
    assert binaries.tailscale.name == "tailscale" and binaries.tailscaled.parent == (
        binaries.tailscale.parent)
    for path in (binaries.tailscale, binaries.tailscaled, binaries.headscale):
        assert os.access(path, os.X_OK), path
    calls = calls_of(fake_go)
    assert [c["args"][:2] for c in calls] == [["mod", "download"], ["install", "-trimpath"]] * 2
    install = calls[1]
    assert install["args"][-2:] == TAILSCALE.targets()
    assert install["env"]["GOTOOLCHAIN"] == "local" and install["env"]["CGO_ENABLED"] == "0"
    # The module cache answers first (version lists some mirrors refuse), then the user's proxy.
    modcache = os.environ["FAKE_GO_MODCACHE"]
    assert install["env"]["GOPROXY"] == (
        f"file://{modcache}/cache/download,https://proxy.example,direct")
    # Built in a temporary directory beside the cache entry, never in it.
    key = TAILSCALE.key(*mesh_binaries.host_platform())
    assert Path(install["env"]["GOBIN"]).parent.name.startswith(f".{key}.")
    record = json.loads((binaries.tailscale.parent / "build.json").read_text())
    assert record["version"] == "v1.102.5" and record["go"] == "go1.26.8"
    assert set(record["sha256"]) == {"tailscale", "tailscaled"}
    leftovers = [p.name for p in mesh_binaries.cache_root().iterdir() if p.name.startswith(".")]
    assert leftovers == []

    again = mesh_binaries.ensure_mesh_binaries()
    assert again == binaries
    assert len(calls_of(fake_go)) == len(calls)  # go was not run again
    assert mesh_binaries.cached_binaries() == binaries


def test_a_build_that_lost_a_file_is_made_again(fake_go: Path) -> None:
    binaries = mesh_binaries.ensure_mesh_binaries()
    binaries.tailscaled.unlink()
    assert mesh_binaries.cached(TAILSCALE) is None and mesh_binaries.cached_binaries() is None
    assert mesh_binaries.ensure_mesh_binaries() == binaries
    assert binaries.tailscaled.exists()


def test_an_unreachable_proxy_is_an_environment_problem_and_leaves_nothing(
        fake_go: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_GO_FAIL", 'go: github.com/juanfont/headscale@v0.29.3: Get '
                       '"https://proxy.example/...": dial tcp: lookup proxy.example: no such host')
    with pytest.raises(EnvironmentMissing) as caught:
        mesh_binaries.ensure_programs(HEADSCALE, lambda _: None)
    assert "cannot download github.com/juanfont/headscale@v0.29.3" in caught.value.message
    assert "no such host" in caught.value.message
    assert "module proxy" in caught.value.hint and "mesh-headscale-build.log" in caught.value.hint
    assert mesh_binaries.cached(HEADSCALE) is None
    assert [p.name for p in mesh_binaries.cache_root().iterdir()
            if not p.name.endswith(".lock")] == []


def test_missing_or_old_go_says_which_go_is_needed(
        fake_go: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_GO_VERSION", "go1.24.2")
    with pytest.raises(EnvironmentMissing) as old:
        mesh_binaries.ensure_mesh_binaries()
    assert "is go1.24.2" in old.value.message and "Go >= 1.26.6" in old.value.message
    assert "go.dev/dl" in old.value.hint
    assert calls_of(fake_go) == []  # nothing was tried with it

    monkeypatch.setenv("STAGECRAFT_GO", str(tmp_path / "no-go-here"))
    with pytest.raises(EnvironmentMissing) as absent:
        mesh_binaries.find_go()
    assert "Go is not installed" in absent.value.message and "STAGECRAFT_GO" in absent.value.message


def test_the_doctor_says_todo_then_ok_and_missing_without_go(
        fake_go: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stagecraft.doctor.model import Status
    from stagecraft.providers.cloud.local import doctor

    go, no_go = mesh_binaries.go_status()
    check = doctor._tailscale_check(no_go, go)
    assert check.status is Status.TODO and "go1.26.8" in check.detail
    assert "stagecraft doctor --fix" in check.fix

    mesh_binaries.ensure_mesh_binaries()
    check = doctor._tailscale_check(None, None)
    assert check.status is Status.OK and "built with go1.26.8" in check.detail

    shutil.rmtree(mesh_binaries.cache_root())
    monkeypatch.setenv("STAGECRAFT_GO", str(tmp_path / "no-go-here"))
    go, no_go = mesh_binaries.go_status()
    check = doctor._tailscale_check(no_go, go)
    assert go is None and check.status is Status.MISSING and "go.dev/dl" in check.fix


@pytest.mark.skipif(not (shutil.which("go") or mesh_binaries.DEFAULT_GO.exists()),
                    reason="no Go on this machine")
def test_real_go_against_a_proxy_nobody_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real go, a module cache of its own and a proxy on a closed local port: go
    # fails in a second, and the error must read as "cannot reach the proxy".
    monkeypatch.delenv("STAGECRAFT_GO", raising=False)
    monkeypatch.setenv("STAGECRAFT_IMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOPROXY", "http://127.0.0.1:9")
    with pytest.raises(EnvironmentMissing) as caught:
        mesh_binaries.ensure_programs(HEADSCALE, lambda _: None)
    assert "cannot download github.com/juanfont/headscale@v0.29.3" in caught.value.message
    assert "127.0.0.1:9" in caught.value.message
    assert mesh_binaries.cached(HEADSCALE) is None


def test_two_builders_at_once_build_once(fake_go: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The second waits on the lock (and says so), then finds the first one's build.
    import threading

    monkeypatch.setenv("FAKE_GO_SLEEP", "1.5")
    said: list[str] = []
    results: list[Path] = []
    barrier = threading.Barrier(2)

    def build() -> None:
        barrier.wait()
        results.append(mesh_binaries.ensure_programs(HEADSCALE, said.append))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2 and results[0] == results[1]
    installs = [c for c in calls_of(fake_go) if c["args"][0] == "install"]
    assert len(installs) == 1
    assert any(line.startswith("waiting for another process that is building headscale")
               for line in said), said
