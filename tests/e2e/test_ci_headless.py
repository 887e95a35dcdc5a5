"""Headless proof: the deploy job `stagecraft ci init` writes, run the way GitHub
Actions runs it, against the example app on a local fleet.

The job of .github/workflows/stagecraft-deploy.yml for the `local` environment is
read from the generated file and its steps run in order: `run:` steps as GitHub runs
them (bash -eo pipefail on a script file, CI=true, GITHUB_ACTIONS=true, stdin from
/dev/null, no terminal, GITHUB_STEP_SUMMARY/GITHUB_OUTPUT/GITHUB_ENV/GITHUB_PATH files,
the step's env with `${{ secrets.X }}` filled from this test's secrets, an unset
secret as the empty string), `uses:` steps emulated (checkout: the project is there;
the virtualenv's cache: a hit, since the venv exists; the ledger's cache and artifact:
the file stays where it is). No .env.local exists: stagecraft reads the secrets from
the variables (STAGECRAFT_SECRETS=env, set by the workflow).

1. the first run deploys: every step exits 0, stdout of the deploy is JSON lines with
   the release id, no prompt, no colour codes, no secret value in any output or the job
   summary, and the release answers over HTTP;
2. a second run (nothing changed) exits 0 too, and so does the plan job of the pull
   request workflow, whose plan lands in the job summary;
3. with the DATABASE_URL secret unset, the deploy step fails naming the variable,
   without a traceback.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from shop_fleet import Edge, copy_example, fleet, stagecraft

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ENVIRONMENT = "local"
JOB = f"deploy-{ENVIRONMENT}"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CONDITION = re.compile(r"^steps\.([\w-]+)\.outputs\.([\w-]+) (==|!=) '([^']*)'$")
ANSI = re.compile(r"\x1b\[")
# What a runner's environment keeps of this process's: tools on PATH, HOME (docker's
# config), and PYTHONPATH so the venv's stagecraft is the code under test.
KEPT = ("PATH", "HOME", "PYTHONPATH", "DOCKER_HOST", "DOCKER_CONFIG", "TMPDIR")


@dataclass
class StepRun:
    name: str
    returncode: int | None  # None: skipped or emulated
    stdout: str = ""
    stderr: str = ""


@dataclass
class JobRun:
    steps: list[StepRun] = field(default_factory=list)
    summary: str = ""

    def step(self, name: str) -> StepRun:
        return next(s for s in self.steps if s.name == name)

    @property
    def failed(self) -> StepRun | None:
        return next((s for s in self.steps if s.returncode not in (0, None)), None)

    def outputs(self) -> str:
        return "".join(s.stdout + s.stderr for s in self.steps) + self.summary


def load_workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return data


def expand(text: str, secrets: dict[str, str]) -> str:
    """``${{ secrets.X }}`` as GitHub expands it (an unset secret is empty); any other
    expression in a step's env would mean the test does not run what CI runs."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name.startswith("secrets."), f"unexpected expression {match.group(0)}"
        return secrets.get(name.removeprefix("secrets."), "")
    return EXPRESSION.sub(value, text)


def condition_holds(condition: str | None, outputs: dict[str, dict[str, str]],
                    failed: bool) -> bool:
    if condition is None:
        return not failed
    if condition == "always()":
        return True
    match = CONDITION.match(condition)
    assert match, f"unexpected if: {condition}"
    step, name, op, wanted = match.groups()
    actual = outputs.get(step, {}).get(name, "")
    return (not failed) and ((actual == wanted) == (op == "=="))


def run_job(project: Path, workflow: dict, secrets: dict[str, str], work: Path,
            job_id: str = JOB) -> JobRun:
    """Run the steps of job ``job_id`` of ``workflow`` the way a runner would."""
    work.mkdir(parents=True, exist_ok=True)
    files = {name: work / name for name in ("summary.md", "output", "env", "path")}
    for path in files.values():
        path.write_text("")
    runner_temp = work / "tmp"
    runner_temp.mkdir(exist_ok=True)
    base = {k: os.environ[k] for k in KEPT if k in os.environ}
    base.update({
        "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(project),
        "GITHUB_STEP_SUMMARY": str(files["summary.md"]), "GITHUB_OUTPUT": str(files["output"]),
        "GITHUB_ENV": str(files["env"]), "GITHUB_PATH": str(files["path"]),
        "RUNNER_TEMP": str(runner_temp), "RUNNER_OS": "Linux",
        "GITHUB_WORKFLOW": workflow["name"], "GITHUB_RUN_NUMBER": "7",
        "GITHUB_RUN_ID": "1234567", "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_SHA": subprocess.run(["git", "rev-parse", "HEAD"], cwd=project,
                                     capture_output=True, text=True, check=True).stdout.strip(),
        "GITHUB_REF": "refs/heads/main", "GITHUB_EVENT_NAME": "push",
    })
    job = workflow["jobs"][job_id]
    env_from_workflow = {k: str(v) for k, v in workflow.get("env", {}).items()}
    cwd = project / workflow.get("defaults", {}).get("run", {}).get("working-directory", ".")
    outputs: dict[str, dict[str, str]] = {}
    added_env: dict[str, str] = {}
    added_path: list[str] = []
    run = JobRun()
    for index, step in enumerate(job["steps"]):
        name = step.get("name", f"step {index}")
        if not condition_holds(step.get("if"), outputs, run.failed is not None):
            run.steps.append(StepRun(name, None))
            continue
        if "uses" in step:
            outputs[step.get("id", name)] = emulate(step, project)
            run.steps.append(StepRun(name, None))
            continue
        assert "${{" not in step["run"], f"an expression in the script of {name!r}"
        env = {**base, **env_from_workflow, **added_env,
               **{k: expand(str(v), secrets) for k, v in step.get("env", {}).items()}}
        env["PATH"] = os.pathsep.join([*reversed(added_path), env["PATH"]])
        script = runner_temp / f"step-{index}.sh"
        script.write_text(step["run"])
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                              cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=1800, check=False)
        run.steps.append(StepRun(name, done.returncode, done.stdout, done.stderr))
        added_path += [line for line in files["path"].read_text().splitlines() if line]
        files["path"].write_text("")
        for line in files["env"].read_text().splitlines():
            key, _, value = line.partition("=")
            added_env[key] = value
        files["env"].write_text("")
    run.summary = files["summary.md"].read_text()
    return run


def emulate(step: dict, project: Path) -> dict[str, str]:
    """The outputs of a `uses:` step on a runner where its work is already done."""
    action = step["uses"]
    if action == "actions/checkout@v4":
        assert (project / ".git").is_dir()
        return {}
    if action == "actions/setup-python@v5":
        return {"python-version": "%d.%d.%d" % sys.version_info[:3]}
    if action == "actions/cache@v4":  # the virtualenv: a hit when it is there
        hit = (project / step["with"]["path"] / "bin" / "stagecraft").is_file()
        return {"cache-hit": "true" if hit else "false"}
    if action in ("actions/cache/restore@v4", "actions/cache/save@v4",
                  "actions/upload-artifact@v4"):
        return {}  # the ledger stays in .stagecraft/ between the runs of this test
    raise AssertionError(f"no emulation for {action}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    with fleet(copy_example(tmp_path_factory.mktemp("ci"), "ci")) as directory:
        yield directory


@pytest.fixture(scope="module")
def secrets(project: Path) -> dict[str, str]:
    """The secrets GitHub would hold, taken from .env.local, which then goes away."""
    env_file = project / ".env.local"
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                  if line and not line.startswith("#"))
    env_file.unlink()
    values["REGISTRY_PASSWORD"] = "registry-pw-not-used-by-the-local-cloud-5f2c"
    values["STAGECRAFT_SSH_KEY_LOCAL"] = (
        project / ".stagecraft" / ENVIRONMENT / "id_ed25519").read_text().strip()
    return values


@pytest.fixture(scope="module")
def workflow(project: Path) -> dict:
    """`ci init` for the local environment, committed like a user would, and a
    virtualenv at the workflow's path whose stagecraft is the one under test."""
    made = stagecraft(project, "ci", "init", "--provider", "github",
                      "--environments", ENVIRONMENT, "--output", "json")
    assert made.returncode == 0, made.stderr
    assert [f["action"] for f in json.loads(made.stdout)["files"]] == ["created"] * 3
    subprocess.run(["git", "add", ".github"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "CI workflows"], cwd=project, check=True)
    data = load_workflow(project / ".github" / "workflows" / "stagecraft-deploy.yml")
    cache = next(s for s in data["jobs"][JOB]["steps"] if s.get("uses") == "actions/cache@v4")
    bin_dir = project / cache["with"]["path"] / "bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "stagecraft"
    wrapper.write_text(f'#!/bin/sh\nexec "{Path(sys.executable).with_name("stagecraft")}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    (project / ".gitignore").write_text((project / ".gitignore").read_text()
                                        + cache["with"]["path"] + "/\n")
    subprocess.run(["git", "commit", "-qam", "ignore the venv"], cwd=project, check=True)
    return data


def check_clean(run: JobRun, secrets: dict[str, str]) -> None:
    everything = run.outputs()
    assert not ANSI.search(everything), "colour codes in CI output"
    assert "apply this plan?" not in everything and "[y/N]" not in everything
    for name, value in secrets.items():
        for line in value.splitlines():
            if len(line.strip()) >= 8:
                assert line.strip() not in everything, f"the value of {name} was printed"


def deploy_lines(run: JobRun) -> list[dict]:
    step = run.step(f"Deploy {ENVIRONMENT}")
    lines = [line for line in step.stdout.splitlines() if line.strip()]
    assert lines, step.stderr[-4000:]
    return [json.loads(line) for line in lines]  # every line is JSON


def test_the_deploy_job_deploys_headless(project: Path, workflow: dict,
                                         secrets: dict[str, str], tmp_path: Path) -> None:
    assert not (project / ".env.local").exists()
    run = run_job(project, workflow, secrets, tmp_path / "run1")
    assert run.failed is None, (run.failed.name, run.failed.stderr[-6000:])
    assert run.step("Install stagecraft").returncode is None  # skipped: the cache hit
    outcome = deploy_lines(run)[-1]
    release = outcome["release"]
    assert release["result"] == "succeeded", outcome
    assert re.match(r"^\d{8}T\d{6}Z-[0-9a-f]{7}", release["id"]), release["id"]
    assert f"### stagecraft deploy: {ENVIRONMENT} (exit 0)" in run.summary
    assert release["id"] in run.summary
    check_clean(run, secrets)
    key = project / ".stagecraft" / ENVIRONMENT / "id_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    edge = Edge.of(project)
    assert edge.version() == "1.0.0"

    again = run_job(project, workflow, secrets, tmp_path / "run2")
    assert again.failed is None, (again.failed.name, again.failed.stderr[-6000:])
    last = deploy_lines(again)[-1]
    assert last["release"] is None or last["release"]["result"] == "succeeded", last
    check_clean(again, secrets)
    assert edge.version() == "1.0.0"

    pr = load_workflow(project / ".github" / "workflows" / "stagecraft-pr.yml")
    plan = run_job(project, pr, secrets, tmp_path / "plan", job_id=f"plan-{ENVIRONMENT}")
    assert plan.failed is None, (plan.failed.name, plan.failed.stderr[-6000:])
    assert plan.summary.startswith(f"### stagecraft plan: {ENVIRONMENT}\n\n```\n")
    assert plan.step(f"Plan {ENVIRONMENT}").stdout in plan.summary
    check_clean(plan, secrets)


def test_a_missing_secret_fails_the_step_naming_it(project: Path, workflow: dict,
                                                   secrets: dict[str, str],
                                                   tmp_path: Path) -> None:
    without = {k: v for k, v in secrets.items() if k != "DATABASE_URL"}
    run = run_job(project, workflow, without, tmp_path / "run3")
    failed = run.failed
    assert failed is not None and failed.name == f"Deploy {ENVIRONMENT}"
    assert failed.returncode == 8, failed.stderr[-4000:]
    assert "error: environment variable DATABASE_URL is not set or empty" in failed.stderr
    assert "hint: export DATABASE_URL=..." in failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    error = json.loads(failed.stdout.splitlines()[-1])  # --output json: the error as data
    assert error["error"] == "SecretMissing" and error["exit_code"] == 8
    # The steps after it that GitHub still runs (if: always()) did run.
    names = [s.name for s in run.steps]
    assert names[-2:] == ["Save the release ledger", "Upload the release ledger"]
    check_clean(run, without)
