"""The GitHub Actions workflows of `ci init` (spec/providers/ci-github.md): what the
request holds, what each workflow does, and actionlint (with shellcheck) on every file
rendered for the example app and the valid test configs: zero findings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stagecraft.config import load_config
from stagecraft.config.loader import load_config_text
from stagecraft.errors import ConfigError, UsageError
from stagecraft.providers.ci import (
    CIProvider,
    SecretVariable,
    ci_provider,
    repository_root,
    secret_variables,
    workflow_request,
)
from stagecraft.providers.ci.github import render_workflows

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "stagecraft.yml"
VALID = ROOT / "tests" / "data" / "configs" / "valid"
REFERENCE = ROOT / "examples" / "shop" / "reference" / "stagecraft.yml"

pytestmark = pytest.mark.usefixtures("stand_in_providers_module")

PINNED = {"actions/checkout@v4", "actions/setup-python@v5", "actions/cache@v4",
          "actions/cache/restore@v4", "actions/cache/save@v4", "actions/upload-artifact@v4"}


def disposable(env) -> bool:
    """As `ci init` asks; the stand-ins of cloud digitalocean cannot be built."""
    from stagecraft.errors import ProviderError
    from stagecraft.hosts.fleet import cloud_for

    try:
        return cloud_for(env).capabilities.disposable_hosts
    except ProviderError:
        return False


def request_for(path: Path, environments=None, **kwargs):
    options = dict(branch="main", python_version="3.11", install="stagecraft==0.1.0",
                   disposable=disposable)
    options.update(kwargs)
    return workflow_request(load_config(path), environments=environments, **options)


def load_workflow(text: str) -> dict:
    """A workflow as data (`on` is a key there, not YAML 1.1's boolean)."""
    data = yaml.safe_load(text)
    data["on"] = data.pop(True)
    return data


def rendered(path: Path, environments=None, **kwargs) -> dict[str, dict]:
    files = render_workflows(request_for(path, environments, **kwargs))
    return {Path(f.path).name: load_workflow(f.text) for f in files}


def actionlint() -> str:
    found = Path(sys.executable).with_name("actionlint")
    program = str(found) if found.is_file() else shutil.which("actionlint")
    if program is None:
        pytest.fail("actionlint is not installed: run scripts/setup.sh (it builds it with "
                    "go install into .venv/bin)")
    return program


CASES = [
    (SHOP, ["staging", "production"]),
    (SHOP, ["local"]),
    (REFERENCE, None),
    *[(path, None) for path in sorted(VALID.glob("*.yml"))
      if path.name != "anchors-and-extensions.yml"],
    (VALID / "anchors-and-extensions.yml", None),
]


@pytest.mark.parametrize(("config", "environments"), CASES,
                         ids=[f"{c.parent.name}/{c.name}-{e}" for c, e in CASES])
def test_actionlint_finds_nothing(tmp_path: Path, config: Path, environments) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: scripts/setup.sh installs it"
    try:
        request = request_for(config, environments)
    except UsageError:  # every environment on the local cloud: name them
        request = request_for(config, list(load_config(config).environments))
    paths = []
    for file in render_workflows(request):
        target = tmp_path / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(file.text)
        paths.append(file.path)
    assert len(paths) == 3
    result = subprocess.run([actionlint(), f"-shellcheck={shellcheck}", "-no-color", *paths],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_deploy_jobs_run_in_order_one_at_a_time_under_their_environment() -> None:
    deploy = rendered(SHOP, ["staging", "production"])["stagecraft-deploy.yml"]
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    assert deploy["permissions"] == {"contents": "read"}
    assert deploy["env"]["STAGECRAFT_SECRETS"] == "env"
    jobs = deploy["jobs"]
    assert list(jobs) == ["deploy-staging", "deploy-production"]
    assert "needs" not in jobs["deploy-staging"]
    assert jobs["deploy-production"]["needs"] == "deploy-staging"
    for name, job in (("staging", jobs["deploy-staging"]),
                      ("production", jobs["deploy-production"])):
        assert job["environment"] == name
        assert job["concurrency"] == {"group": f"stagecraft-deploy-{name}",
                                      "cancel-in-progress": False}
        assert job["timeout-minutes"] == 60
        step = next(s for s in job["steps"] if s.get("name") == f"Deploy {name}")
        assert f"stagecraft deploy --env {name} --yes --output json" in step["run"]
        assert step["env"] == {
            "DATABASE_URL": "${{ secrets.DATABASE_URL }}",
            "POSTGRES_PASSWORD": "${{ secrets.POSTGRES_PASSWORD }}",
            "REGISTRY_PASSWORD": "${{ secrets.REGISTRY_PASSWORD }}"}
        access = next(s for s in job["steps"] if "SSH access" in s.get("name", ""))
        assert access["env"] == {
            "STAGECRAFT_SSH_KEY": f"${{{{ secrets.STAGECRAFT_SSH_KEY_{name.upper()} }}}}"}
        assert "umask 077" in access["run"]


def test_secrets_reach_only_the_steps_that_run_stagecraft_on_hosts() -> None:
    for workflow in rendered(SHOP, ["staging"]).values():
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                values = " ".join(str(v) for v in step.get("env", {}).values())
                if "secrets." in values:
                    assert step["name"].split()[0] in ("Plan", "Deploy", "Rollback", "Give"), step


def test_every_job_pins_actions_caches_the_venv_and_has_a_timeout() -> None:
    for name, workflow in rendered(SHOP, ["staging", "production"]).items():
        assert workflow["permissions"] == {"contents": "read"}, name
        for job_name, job in workflow["jobs"].items():
            assert isinstance(job["timeout-minutes"], int), (name, job_name)
            uses = {s["uses"] for s in job["steps"] if "uses" in s}
            assert uses <= PINNED, uses
            steps = {s.get("id"): s for s in job["steps"]}
            cache = steps["venv"]
            assert cache["uses"] == "actions/cache@v4"
            assert cache["with"]["key"].startswith(
                "stagecraft-venv-${{ runner.os }}-py${{ steps.python.outputs.python-version }}-")
            install = next(s for s in job["steps"] if s.get("name") == "Install stagecraft")
            assert install["if"] == "steps.venv.outputs.cache-hit != 'true'"
            for step in job["steps"]:
                if "run" in step:
                    assert step["run"].startswith("set -euo pipefail\n"), step


def test_requirements_file_keys_the_venv_cache_on_its_hash() -> None:
    jobs = rendered(SHOP, ["staging"], requirements="deploy/requirements.txt")[
        "stagecraft-deploy.yml"]["jobs"]
    steps = {s.get("id") or s["name"]: s for s in jobs["deploy-staging"]["steps"]}
    assert steps["venv"]["with"]["key"].endswith("${{ hashFiles('deploy/requirements.txt') }}")
    assert '-r "$GITHUB_WORKSPACE/deploy/requirements.txt"' in steps["Install stagecraft"]["run"]


def test_pull_requests_validate_then_plan_into_the_job_summary() -> None:
    pr = rendered(SHOP, ["staging", "production"])["stagecraft-pr.yml"]
    assert pr["on"] == {"pull_request": None}
    assert list(pr["jobs"]) == ["validate", "plan-staging", "plan-production"]
    assert pr["jobs"]["validate"]["steps"][-1]["run"].endswith("stagecraft validate\n")
    plan = pr["jobs"]["plan-production"]
    assert plan["needs"] == "validate" and "environment" not in plan
    script = plan["steps"][-1]["run"]
    assert "stagecraft plan --env production" in script
    assert '>> "$GITHUB_STEP_SUMMARY"' in script


def test_rollback_asks_for_the_environment_and_an_optional_release() -> None:
    rollback = rendered(SHOP, ["staging", "production"])["stagecraft-rollback.yml"]
    inputs = rollback["on"]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["type"] == "choice"
    assert inputs["environment"]["options"] == ["staging", "production"]
    assert inputs["release"] == {"description": inputs["release"]["description"],
                                 "required": False, "type": "string", "default": ""}
    job = rollback["jobs"]["rollback-production"]
    assert job["if"] == "inputs.environment == 'production'"
    assert job["environment"] == "production"
    assert job["concurrency"]["group"] == "stagecraft-deploy-production"  # as deploys
    step = next(s for s in job["steps"] if s.get("name") == "Rollback production")
    assert step["env"]["RELEASE"] == "${{ inputs.release }}"  # never pasted into the script
    assert 'stagecraft rollback ${RELEASE:+--to "$RELEASE"} --env production' in step["run"]


def test_rendering_is_a_pure_function() -> None:
    request = request_for(SHOP, ["staging"])
    assert render_workflows(request) == render_workflows(request)
    provider = ci_provider("github")
    assert isinstance(provider, CIProvider) and provider.workflows(request) == \
        render_workflows(request)


def test_default_environments_leave_out_the_local_cloud() -> None:
    request = request_for(VALID / "provider-overrides.yml")
    assert [e.name for e in request.environments] == ["staging"]
    with pytest.raises(UsageError) as caught:
        request_for(SHOP)
    assert caught.value.message.startswith("no environment to deploy from CI: every "
                                           "environment of stagecraft.yml (local, staging, "
                                           "production) runs on disposable hosts")
    assert caught.value.hint == ("name the environments CI deploys, in order: "
                                 "--environments local,staging,production")


def test_unknown_or_repeated_environments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--environments: prod not defined") as caught:
        request_for(SHOP, ["staging", "prod"])
    assert caught.value.hint == "environments: local, staging, production"
    with pytest.raises(UsageError, match="named twice"):
        request_for(SHOP, ["staging", "staging"])


CONFIG = """
version: 1
project:
  name: tiny
  registry: {{server: r.example.com, username: u, password: "${{env:REG_PW}}"}}
providers:
  secrets: {secrets}
  cloud: {{kind: ssh}}
services:
  web:
    image: a/b:1
    secrets: [API_KEY]
    on: [app]
migrations: {{engine: command, from: web, database_url: "${{secret:DB_URL}}",
             pre_deploy: {{command: [m]}}}}
environments:
  prod-eu:
    hosts: [{{name: h1, roles: [app], address: 10.0.0.1}}]
"""


def test_secret_variables_cover_every_reference_with_the_prefix() -> None:
    env = load_config_text(CONFIG.format(secrets="{kind: env, prefix: TINY_}")).environment(
        "prod-eu")
    assert secret_variables(env) == (
        SecretVariable("REG_PW", "REG_PW"),  # ${env:...} is read as it is named
        SecretVariable("TINY_API_KEY", "API_KEY"),
        SecretVariable("TINY_DB_URL", "DB_URL"))
    plain = load_config_text(CONFIG.format(secrets="{kind: envfile}")).environment("prod-eu")
    assert [s.variable for s in secret_variables(plain)] == ["API_KEY", "DB_URL", "REG_PW"]


def test_ssh_key_secret_name_is_a_valid_secret_name() -> None:
    loaded = load_config_text(CONFIG.format(secrets="{kind: envfile}"))
    loaded = type(loaded)(**{**loaded.__dict__, "path": Path("/x/stagecraft.yml")})
    request = workflow_request(loaded, environments=None, branch="main",
                               python_version="3.11", install="stagecraft")
    assert request.environments[0].ssh_key_secret == "STAGECRAFT_SSH_KEY_PROD_EU"


def test_a_github_prefixed_secret_is_refused() -> None:
    text = CONFIG.format(secrets="{kind: envfile}").replace("[API_KEY]", "[GITHUB_TOKEN]")
    with pytest.raises(ConfigError, match="GITHUB_TOKEN, but CI secrets cannot have names "
                                          "that start with GITHUB_"):
        secret_variables(load_config_text(text).environment("prod-eu"))


def test_workflows_go_to_the_git_root_and_run_in_the_project_directory(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    project = tmp_path / "deploy" / "shop"
    project.mkdir(parents=True)
    shutil.copy(SHOP, project / "stagecraft.yml")
    assert repository_root(project) == tmp_path
    files = render_workflows(request_for(project / "stagecraft.yml", ["staging"]))
    assert [f.path for f in files] == [".github/workflows/stagecraft-pr.yml",
                                       ".github/workflows/stagecraft-deploy.yml",
                                       ".github/workflows/stagecraft-rollback.yml"]
    deploy = load_workflow(files[1].text)
    assert deploy["defaults"]["run"] == {"shell": "bash", "working-directory": "deploy/shop"}
    save = next(s for s in deploy["jobs"]["deploy-staging"]["steps"]
                if s.get("uses") == "actions/cache/save@v4")
    assert save["with"]["path"] == "deploy/shop/.stagecraft/releases.json"
    assert repository_root(tmp_path / "deploy") == tmp_path
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    assert repository_root(outside) == outside.resolve()
