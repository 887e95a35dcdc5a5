"""GitHub Actions workflows of a project: plan on pull requests, deploy on pushes to
the default branch, rollback on demand (spec/providers/ci-github.md).

Workflows are built as data and dumped as YAML, so quoting is YAML's business; the
run: scripts are short bash with ``set -euo pipefail``. Secrets reach only the steps
that run stagecraft, as environment variables, and stagecraft reads them through the
env secrets provider (STAGECRAFT_SECRETS=env).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from stagecraft.providers.ci.base import EnvironmentTarget, WorkflowFile, WorkflowRequest

CHECKOUT = "actions/checkout@v4"
SETUP_PYTHON = "actions/setup-python@v5"
CACHE = "actions/cache@v4"
CACHE_RESTORE = "actions/cache/restore@v4"
CACHE_SAVE = "actions/cache/save@v4"
UPLOAD_ARTIFACT = "actions/upload-artifact@v4"

WORKFLOW_DIR = ".github/workflows"
PR_FILE = "stagecraft-pr.yml"
DEPLOY_FILE = "stagecraft-deploy.yml"
ROLLBACK_FILE = "stagecraft-rollback.yml"

#: Where the workflows keep stagecraft's virtualenv (cached across runs).
VENV = "$GITHUB_WORKSPACE/.stagecraft-venv"
VENV_PATH = ".stagecraft-venv"
#: The step id of the virtualenv's cache; the install step runs only on a miss.
VENV_STEP = "venv"

TIMEOUTS = {"validate": 10, "plan": 20, "deploy": 60, "rollback": 30}


class GithubActions:
    """The `github` CI provider: renders .github/workflows/stagecraft-*.yml."""

    kind = "github"

    def workflows(self, request: WorkflowRequest) -> list[WorkflowFile]:
        return render_workflows(request)


def render_workflows(request: WorkflowRequest) -> list[WorkflowFile]:
    """The three workflow files of ``request``."""
    return [
        WorkflowFile(f"{WORKFLOW_DIR}/{PR_FILE}", _dump(request, _pr_workflow(request)),
                     "pull requests: validate, and plan each environment"),
        WorkflowFile(f"{WORKFLOW_DIR}/{DEPLOY_FILE}",
                     _dump(request, _deploy_workflow(request)),
                     f"pushes to {request.branch}: deploy "
                     + " then ".join(e.name for e in request.environments)),
        WorkflowFile(f"{WORKFLOW_DIR}/{ROLLBACK_FILE}",
                     _dump(request, _rollback_workflow(request)),
                     "on demand: roll an environment back to an earlier release"),
    ]


def ledger_cache_prefix(project: str) -> str:
    return f"stagecraft-ledger-{project}-"


# --- workflows -----------------------------------------------------------------


def _common(request: WorkflowRequest, name: str) -> dict[str, Any]:
    env = {"STAGECRAFT_SECRETS": "env", "STAGECRAFT_CONFIG": request.config_file,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    defaults: dict[str, Any] = {"shell": "bash"}
    if request.working_directory != ".":
        defaults["working-directory"] = request.working_directory
    return {"name": name, "permissions": {"contents": "read"}, "env": env,
            "defaults": {"run": defaults}}


def _pr_workflow(request: WorkflowRequest) -> dict[str, Any]:
    workflow = _common(request, "stagecraft plan")
    jobs: dict[str, Any] = {
        "validate": {
            "name": "validate stagecraft.yml",
            "runs-on": "ubuntu-latest",
            "timeout-minutes": TIMEOUTS["validate"],
            "steps": [*_setup_steps(request),
                      _run("Validate stagecraft.yml", "stagecraft validate")],
        },
    }
    for target in request.environments:
        jobs[f"plan-{target.name}"] = {
            "name": f"plan {target.name}",
            "needs": "validate",
            "runs-on": "ubuntu-latest",
            "timeout-minutes": TIMEOUTS["plan"],
            "steps": [*_setup_steps(request),
                      _restore_ledger(request, target),
                      _host_access(request, target),
                      _run(f"Plan {target.name}", _plan_script(target),
                           env=_secret_env(target))],
        }
    return {"name": workflow.pop("name"), "on": {"pull_request": None},
            **workflow,
            "concurrency": {"group": "stagecraft-pr-${{ github.event.pull_request.number }}",
                            "cancel-in-progress": True},
            "jobs": jobs}


def _deploy_workflow(request: WorkflowRequest) -> dict[str, Any]:
    workflow = _common(request, "stagecraft deploy")
    jobs: dict[str, Any] = {}
    previous: str | None = None
    for target in request.environments:
        job = _release_job(request, target, "deploy", _deploy_script(target))
        if previous is not None:
            job = {"needs": previous, **job}
        job = {"name": f"deploy {target.name}", **job}
        jobs[f"deploy-{target.name}"] = job
        previous = f"deploy-{target.name}"
    return {"name": workflow.pop("name"),
            "on": {"push": {"branches": [request.branch]}},
            **workflow, "jobs": jobs}


def _rollback_workflow(request: WorkflowRequest) -> dict[str, Any]:
    workflow = _common(request, "stagecraft rollback")
    names = [target.name for target in request.environments]
    inputs = {
        "environment": {"description": "The environment to roll back.", "required": True,
                        "type": "choice", "options": names},
        "release": {"description": "The release id to bring back (empty: the release "
                                   "before the current one).",
                    "required": False, "type": "string", "default": ""},
    }
    jobs: dict[str, Any] = {}
    for target in request.environments:
        job = _release_job(request, target, "rollback", _rollback_script(target),
                           extra_env={"RELEASE": "${{ inputs.release }}"})
        jobs[f"rollback-{target.name}"] = {
            "name": f"rollback {target.name}",
            "if": f"inputs.environment == '{target.name}'", **job}
    return {"name": workflow.pop("name"),
            "on": {"workflow_dispatch": {"inputs": inputs}},
            **workflow, "jobs": jobs}


def _release_job(request: WorkflowRequest, target: EnvironmentTarget, verb: str,
                 script: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """A job that changes an environment's hosts: one at a time per environment (deploy
    and rollback share the group), under the GitHub environment of the same name."""
    return {
        "runs-on": "ubuntu-latest",
        "environment": target.name,
        "concurrency": {"group": f"stagecraft-deploy-{target.name}",
                        "cancel-in-progress": False},
        "timeout-minutes": TIMEOUTS[verb],
        "steps": [
            *_setup_steps(request),
            _restore_ledger(request, target),
            _host_access(request, target),
            _run(f"{verb.capitalize()} {target.name}", script,
                 env={**(extra_env or {}), **_secret_env(target)}),
            {"name": "Save the release ledger", "if": "always()", "uses": CACHE_SAVE,
             "with": {"path": _ledger_path(request),
                      "key": _ledger_key(request, target)}},
            {"name": "Upload the release ledger", "if": "always()", "uses": UPLOAD_ARTIFACT,
             "with": {"name": f"stagecraft-ledger-{target.name}",
                      "path": _ledger_path(request), "if-no-files-found": "ignore",
                      "overwrite": True}},
        ],
    }


# --- steps ---------------------------------------------------------------------


def _setup_steps(request: WorkflowRequest) -> list[dict[str, Any]]:
    if request.requirements:
        hashed = f"${{{{ hashFiles('{request.requirements}') }}}}"
        install = f'"{VENV}/bin/pip" install --quiet -r "$GITHUB_WORKSPACE/{request.requirements}"'
    else:
        hashed = _key_part(request.install)
        install = f'"{VENV}/bin/pip" install --quiet {_shell_quote(request.install)}'
    key = ("stagecraft-venv-${{ runner.os }}-py${{ steps.python.outputs.python-version }}-"
           + hashed)
    return [
        {"name": "Check out the repository", "uses": CHECKOUT},
        {"name": "Set up Python", "id": "python", "uses": SETUP_PYTHON,
         "with": {"python-version": request.python_version}},
        {"name": "Restore the stagecraft virtualenv", "id": VENV_STEP, "uses": CACHE,
         "with": {"path": VENV_PATH, "key": key}},
        _run("Install stagecraft", f'python -m venv "{VENV}"\n{install}',
             condition=f"steps.{VENV_STEP}.outputs.cache-hit != 'true'"),
        _run("Put stagecraft on PATH", f'echo "{VENV}/bin" >> "$GITHUB_PATH"'),
    ]


def _restore_ledger(request: WorkflowRequest, target: EnvironmentTarget) -> dict[str, Any]:
    # The newest ledger any run saved (restore-keys is a prefix): deploys of the
    # environments before this one in the same run included.
    return {"name": "Restore the release ledger", "uses": CACHE_RESTORE,
            "with": {"path": _ledger_path(request), "key": _ledger_key(request, target),
                     "restore-keys": ledger_cache_prefix(request.project)}}


def _host_access(request: WorkflowRequest, target: EnvironmentTarget) -> dict[str, Any]:
    state = f".stagecraft/{target.name}"
    script = f"""\
state={state}
for file in hosts.json known_hosts; do
  if [ ! -f "$state/$file" ]; then
    echo "::error::$state/$file is not in the repository: run 'stagecraft infra up --env {target.name}' and commit $state/hosts.json and $state/known_hosts"
    exit 1
  fi
done
if [ -n "${{STAGECRAFT_SSH_KEY:-}}" ]; then
  (umask 077 && printf '%s\\n' "$STAGECRAFT_SSH_KEY" > "$state/id_ed25519")
elif [ ! -f "$state/id_ed25519" ]; then
  echo "::error::the secret {target.ssh_key_secret} is not set: add the private key of $state/id_ed25519 as that secret"
  exit 1
fi"""
    return _run("Give this runner the hosts' SSH access", script,
                env={"STAGECRAFT_SSH_KEY": f"${{{{ secrets.{target.ssh_key_secret} }}}}"})


def _plan_script(target: EnvironmentTarget) -> str:
    return f"""\
plan="$RUNNER_TEMP/stagecraft-plan-{target.name}.txt"
status=0
stagecraft plan --env {target.name} > "$plan" || status=$?
cat "$plan"
{{
  echo "### stagecraft plan: {target.name}"
  echo
  if [ "$status" -ne 0 ]; then echo "plan failed (exit $status): see the job's log"; echo; fi
  echo '```'
  cat "$plan"
  echo '```'
}} >> "$GITHUB_STEP_SUMMARY"
exit "$status\""""


def _deploy_script(target: EnvironmentTarget) -> str:
    return _release_script("deploy", target, "stagecraft deploy")


def _rollback_script(target: EnvironmentTarget) -> str:
    return _release_script(
        "rollback", target, 'stagecraft rollback ${RELEASE:+--to "$RELEASE"}')


def _release_script(verb: str, target: EnvironmentTarget, command: str) -> str:
    # JSON lines on stdout (kept for the summary); progress and errors on stderr.
    return f"""\
out="$RUNNER_TEMP/stagecraft-{verb}-{target.name}.jsonl"
status=0
{command} --env {target.name} --yes --output json \\
  --message "GitHub Actions: $GITHUB_WORKFLOW #$GITHUB_RUN_NUMBER ($GITHUB_SHA)" \\
  | tee "$out" || status=$?
{{
  echo "### stagecraft {verb}: {target.name} (exit $status)"
  echo
  echo '```json'
  tail -n 1 "$out"
  echo '```'
}} >> "$GITHUB_STEP_SUMMARY"
exit "$status\""""


def _secret_env(target: EnvironmentTarget) -> dict[str, str]:
    return {s.variable: f"${{{{ secrets.{s.secret} }}}}" for s in target.secrets}


def _run(name: str, script: str, *, env: dict[str, str] | None = None,
         condition: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name}
    if condition:
        step["if"] = condition
    if env:
        step["env"] = dict(sorted(env.items()))
    step["run"] = f"set -euo pipefail\n{script}\n"
    return step


def _ledger_path(request: WorkflowRequest) -> str:
    base = "" if request.working_directory == "." else f"{request.working_directory}/"
    return f"{base}.stagecraft/releases.json"


def _ledger_key(request: WorkflowRequest, target: EnvironmentTarget) -> str:
    return (ledger_cache_prefix(request.project)
            + "${{ github.run_id }}-${{ github.run_attempt }}-" + target.name)


def _key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- YAML ----------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings (the run: scripts) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def _dump(request: WorkflowRequest, workflow: dict[str, Any]) -> str:
    body = yaml.dump(workflow, Dumper=_Dumper, sort_keys=False, width=1000,
                     default_flow_style=False)
    # YAML 1.1 dumpers quote `on` (a boolean there); GitHub reads it as the key it is.
    body = body.replace("\n'on':", "\non:", 1)
    body = body.replace("pull_request: null", "pull_request:")
    version = f" {request.stagecraft_version}" if request.stagecraft_version else ""
    header = (f"# Written by `stagecraft ci init` (stagecraft{version}) from "
              f"{_config_path(request)}.\n"
              "# Change stagecraft.yml or the options of `ci init` and run it again "
              "(--force) rather\n# than editing this file. Setup (secrets, GitHub "
              "environments, the SSH key,\n# the release ledger): stagecraft's docs/ci.md.\n")
    return header + body


def _config_path(request: WorkflowRequest) -> str:
    if request.working_directory == ".":
        return request.config_file
    return f"{request.working_directory}/{request.config_file}"
