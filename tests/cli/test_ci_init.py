"""`stagecraft ci init` (spec/cli/ci-init.md): writes the three workflows at the git
root, shows what it did (text and JSON), never replaces a file that differs without
--force, and writes nothing with --dry-run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from stagecraft.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "stagecraft.yml"
FILES = [".github/workflows/stagecraft-pr.yml", ".github/workflows/stagecraft-deploy.yml",
         ".github/workflows/stagecraft-rollback.yml"]


@pytest.fixture(autouse=True)
def no_stagecraft_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STAGECRAFT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shop example in app/ of a git work tree (a .git directory is all it takes)."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "app").mkdir()
    shutil.copy(SHOP, tmp_path / "app" / "stagecraft.yml")
    monkeypatch.chdir(tmp_path / "app")
    return tmp_path


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["ci", "init", *args])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_writes_three_workflows_at_the_git_root(repo: Path, capsys) -> None:
    code, out, err = run(capsys, "--provider", "github", "--environments", "staging,production")
    assert code == 0, err
    assert out.splitlines() == [
        "file                                       action   runs",
        ".github/workflows/stagecraft-pr.yml        created  pull requests: validate, and "
        "plan each environment",
        ".github/workflows/stagecraft-deploy.yml    created  pushes to main: deploy staging "
        "then production",
        ".github/workflows/stagecraft-rollback.yml  created  on demand: roll an environment "
        "back to an earlier release"]
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.yml")
                  if ".github" in p.parts) == sorted(FILES)
    assert "working-directory: app" in (repo / FILES[1]).read_text()
    assert not (repo / "app" / ".github").exists()
    # Again: nothing differs, nothing is written.
    code, out, err = run(capsys, "--provider", "github", "--environments", "staging,production",
                         "--output", "json")
    assert code == 0, err
    data = json.loads(out)
    assert [f["action"] for f in data["files"]] == ["unchanged"] * 3
    assert data["environments"] == ["staging", "production"]
    assert data["secrets"]["staging"] == ["DATABASE_URL", "POSTGRES_PASSWORD",
                                          "REGISTRY_PASSWORD", "STAGECRAFT_SSH_KEY_STAGING"]
    assert data["root"] == str(repo.resolve()) and data["dry_run"] is False


def test_a_file_that_differs_is_kept_without_force(repo: Path, capsys) -> None:
    assert run(capsys, "--provider", "github", "--environments", "staging")[0] == 0
    edited = repo / FILES[1]
    edited.write_text(edited.read_text() + "# mine\n")
    code, out, err = run(capsys, "--provider", "github", "--environments", "staging,production")
    assert (code, out) == (2, "")
    assert err == (
        "error: .github/workflows/stagecraft-pr.yml, .github/workflows/stagecraft-deploy.yml, "
        ".github/workflows/stagecraft-rollback.yml already exist with other content\n"
        "hint: compare them with `stagecraft ci init --dry-run --output json`, then run again "
        "with --force to replace them (edits made by hand are lost)\n")
    assert edited.read_text().endswith("# mine\n")
    assert "deploy-production" not in (repo / FILES[0]).read_text()
    code, out, err = run(capsys, "--provider", "github", "--environments", "staging,production",
                         "--force")
    assert code == 0, err
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["updated"] * 3
    assert not edited.read_text().endswith("# mine\n")


def test_dry_run_writes_nothing(repo: Path, capsys) -> None:
    code, out, err = run(capsys, "--provider", "github", "--environments", "staging",
                         "--dry-run", "--output", "json")
    assert code == 0, err
    assert [f["action"] for f in json.loads(out)["files"]] == ["would be created"] * 3
    assert not (repo / ".github").exists()


def test_provider_comes_from_the_config(repo: Path, capsys) -> None:
    config = repo / "app" / "stagecraft.yml"
    config.write_text(config.read_text().replace(
        "  secrets:  { kind: envfile", "  ci: { kind: github }\n  secrets:  { kind: envfile"))
    code, out, err = run(capsys, "--environments", "local", "--output", "json")
    assert code == 0, err
    assert json.loads(out)["provider"] == "github"


def test_no_provider_is_a_usage_error(repo: Path, capsys) -> None:
    assert run(capsys, "--environments", "staging") == (2, "", (
        "error: no CI provider: providers.ci is not set in stagecraft.yml and --provider was "
        "not given\n"
        "hint: pass --provider github, or set providers.ci: {kind: github} in stagecraft.yml\n"))


def test_unknown_provider_is_a_provider_error(repo: Path, capsys) -> None:
    code, out, err = run(capsys, "--provider", "gitlab", "--environments", "staging")
    assert (code, out) == (8, "")
    assert err == ("error: unknown ci provider 'gitlab'\n"
                   "hint: use one of: github (providers.ci.kind)\n")


def test_only_local_environments_need_naming(repo: Path, capsys) -> None:
    code, out, err = run(capsys, "--provider", "github")
    assert (code, out) == (2, "")
    assert err.startswith("error: no environment to deploy from CI: every environment of "
                          "stagecraft.yml (local, staging, production) runs on disposable hosts")
    assert err.endswith("hint: name the environments CI deploys, in order: --environments "
                        "local,staging,production\n")


def test_install_and_requirements_exclude_each_other(repo: Path, capsys) -> None:
    assert run(capsys, "--provider", "github", "--environments", "staging", "--install",
               "stagecraft", "--requirements", "r.txt") == (2, "", (
        "error: --install and --requirements both say how to install stagecraft\n"
        "hint: pass one of them\n"))
