"""`stagecraft secrets list` and `secrets sync --to github`, run as a process against the
stand-in of GitHub's API (tests/github_stand_in.py; every exchange is checked against
GitHub's OpenAPI description). The values are distinctive strings, and no test lets
one appear in any output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.github_stand_in import REPO, TOKEN, github  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
VALUES = {
    "DATABASE_URL": "postgresql://shop:Zq9-db-url-value@db:5432/shop",
    "POSTGRES_PASSWORD": "Zq9-postgres-password-value",
    "REGISTRY_PASSWORD": "Zq9 registry 'password' value",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "shop"
    shutil.copytree(ROOT / "examples" / "shop", directory,
                    ignore=shutil.ignore_patterns(".stagecraft", "__pycache__", "app", "db"))
    write_values(directory, VALUES)
    for args in (["init", "-q", "-b", "main"],
                 ["remote", "add", "origin", "git@github.com:acme/shop.git"]):
        subprocess.run(["git", *args], cwd=directory, check=True)
    return directory


def write_values(project: Path, values: dict[str, str]) -> None:
    lines = [f"{name}={json.dumps(value)}" for name, value in values.items()]
    (project / ".env.local").write_text("\n".join(lines) + "\n")


def run(project: Path, github, *args: str, token: str | None = TOKEN):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STAGECRAFT_", "GITHUB_", "GH_"))}
    env.update(PYTHONPATH=str(ROOT), GITHUB_API_URL=github.url)
    if token is not None:
        env["GITHUB_TOKEN"] = token
    done = subprocess.run([sys.executable, "-m", "stagecraft", *args], cwd=project, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    for value in VALUES.values():  # whatever happened, no value was printed
        assert value not in done.stdout + done.stderr
    return done


def puts(github) -> list[str]:
    return [x["path"].rsplit("/", 1)[1] for x in github.exchanges if x["method"] == "PUT"]


def test_list_shows_names_usage_and_presence(project: Path, github) -> None:
    write_values(project, {k: v for k, v in VALUES.items() if k != "REGISTRY_PASSWORD"})
    done = run(project, github, "secrets", "list", "-e", "local")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "secrets of local (provider envfile):\n"
        "  ok      DATABASE_URL  (migrations.database_url, services.web.secrets)\n"
        "  ok      POSTGRES_PASSWORD  (services.db.secrets)\n"
        "  MISSING REGISTRY_PASSWORD  (project.registry.password)\n"
        "1 missing: add them to the secrets provider\n")


def test_sync_shows_the_plan_then_writes_every_value_intact(project: Path, github) -> None:
    github.state.set_secret(REPO, "OLD_TOKEN", "kept", environment="local")
    github.state.set_secret(REPO, "DATABASE_URL", "stale", environment="local")
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "secrets of local -> GitHub, environment 'local' of acme/shop:\n"
        "  create  POSTGRES_PASSWORD\n"
        "  create  REGISTRY_PASSWORD\n"
        "  update  DATABASE_URL\n"
        "  leave   OLD_TOKEN  (on GitHub, not referenced: left alone)\n"
        "  (GitHub shows no values, so every referenced secret it has is written again: "
        "update)\n"
        "wrote 3 secret(s) to environment 'local' of acme/shop: 2 created, 1 updated\n")
    for name, value in VALUES.items():
        assert github.state.secret_value(REPO, name, "local") == value
    assert github.state.secret_value(REPO, "OLD_TOKEN", "local") == "kept"
    assert sorted(puts(github)) == sorted(VALUES)


def test_dry_run_shows_the_plan_and_writes_nothing(project: Path, github) -> None:
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local",
               "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "  create  DATABASE_URL\n" in done.stdout
    assert done.stdout.endswith("dry run: nothing written\n")
    assert puts(github) == []
    assert not any(x["path"].endswith("public-key") for x in github.exchanges)


def test_without_a_terminal_it_refuses_unless_yes(project: Path, github) -> None:
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local")
    assert done.returncode == 2
    assert done.stderr.endswith(
        "error: writing 3 secret(s) to GitHub needs confirmation, and there is no terminal "
        "to ask on\nhint: pass --yes to go ahead (or --dry-run to only see the plan)\n")
    assert puts(github) == []


def test_json_lists_names_and_actions_only(project: Path, github) -> None:
    github.state.set_secret(REPO, "DATABASE_URL", "stale")
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local",
               "--repo-level", "--yes", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data == {
        "to": "github", "repo": "acme/shop", "github_environment": None, "dry_run": False,
        "secrets": [
            {"name": "DATABASE_URL", "action": "update", "result": "updated"},
            {"name": "POSTGRES_PASSWORD", "action": "create", "result": "created"},
            {"name": "REGISTRY_PASSWORD", "action": "create", "result": "created"}]}
    assert github.state.secret_value(REPO, "POSTGRES_PASSWORD") == VALUES["POSTGRES_PASSWORD"]


def test_debug_output_never_holds_a_value(project: Path, github) -> None:
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local",
               "--environment-scope", "production", "--repo", "acme/shop", "--yes",
               "--debug", "-vv")
    assert done.returncode == 0, done.stderr
    assert github.state.secret_value(REPO, "REGISTRY_PASSWORD", "production") == \
        VALUES["REGISTRY_PASSWORD"]


def test_a_missing_value_stops_before_github_is_asked(project: Path, github) -> None:
    write_values(project, {k: v for k, v in VALUES.items() if k != "REGISTRY_PASSWORD"})
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local", "--yes")
    assert done.returncode == 8
    assert ("error: the secrets provider (envfile) of environment 'local' has no value for "
            "REGISTRY_PASSWORD\n") in done.stderr
    assert github.exchanges == []


def test_an_unknown_github_environment_says_how_to_fix_it(project: Path, github) -> None:
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local",
               "--environment-scope", "staging", "--yes")
    assert done.returncode == 8
    assert "(404: Not Found)" in done.stderr
    assert "hint: create the environment 'staging' in acme/shop" in done.stderr


def test_no_token_is_a_usage_error_with_a_hint(project: Path, github) -> None:
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local",
               token=None)
    assert done.returncode == 2
    assert "error: no GitHub token: GITHUB_TOKEN and GH_TOKEN are not set" in done.stderr
    assert "hint: export GITHUB_TOKEN=" in done.stderr


def test_a_bad_token_is_refused_with_the_endpoint_named(project: Path, github) -> None:
    done = run(project, github, "secrets", "sync", "--to", "github", "-e", "local",
               token="not-the-token")
    assert done.returncode == 8
    assert done.stderr.startswith(
        "error: GitHub refused the token (401: Bad credentials) for listing the secrets of "
        "environment local of acme/shop (GET /repos/acme/shop/environments/local/secrets)\n")


def test_hosts_options_are_refused_for_github_only_flags(project: Path, github) -> None:
    done = run(project, github, "secrets", "sync", "--to", "hosts", "-e", "local",
               "--repo-level")
    assert done.returncode == 2
    assert "are for --to github" in done.stderr
