"""Running a cloud's playbook on this machine (cloud `digitalocean`'s role): the
provisioner the CLI hands to a cloud's ``up`` and ``down``, so providers never import
the Ansible driver (docs/architecture.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stagecraft import steps
from stagecraft.ansible.bundle import prepare
from stagecraft.ansible.request import RunRequest
from stagecraft.ansible.runner import run
from stagecraft.infra.bootstrap import new_run_id

#: The one host a provisioning playbook runs on: this machine, with stagecraft's Python.
CONTROLLER_INVENTORY = {"all": {"hosts": {"localhost": {
    "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}


def run_on_controller(playbook: str, variables: Mapping[str, Any], state_dir: Path,
                      log: Callable[[str], None]) -> None:
    """Run the bundled ``playbook`` on localhost with ``variables``; each task's name
    shows as progress. Raises RunFailed (the failed task and its message) on failure."""
    environment = Path(state_dir).name
    request = RunRequest(run_id=new_run_id(Path(playbook).stem, environment),
                         playbook=playbook, inventory=CONTROLLER_INVENTORY,
                         extravars=dict(variables), forks=1)
    bundle = prepare(request, Path(state_dir).parent / "runs")
    with steps.step(log, f"running {playbook}") as step:
        result = run(bundle, on_event=lambda state: _note_task(step, state))
        result.raise_for_status()  # inside: a failed run's step reads "failed", not "done"


def _note_task(step: steps.Step, state: Any) -> None:
    last = state.last
    if last is not None and last.kind == "task" and last.task:
        step.note(last.task)
