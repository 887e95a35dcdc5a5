# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The stagecraft.platform.ledger callback: records deploys and rollbacks run with plain
ansible-playbook in the project's release ledger, as the stagecraft CLI records its own."""

from __future__ import annotations

DOCUMENTATION = r"""
name: ledger
type: notification
short_description: Record deploys and rollbacks in the stagecraft release ledger
version_added: 0.1.0
description:
  - When C(stagecraft.platform.deploy) or C(stagecraft.platform.rollback) runs with the
    C(stagecraft.platform.stagecraft) inventory plugin and names a release
    (C(-e stagecraft_release=<id>)), this callback writes the release to the project's
    ledger (C(.stagecraft/releases.json) beside stagecraft.yml) as the stagecraft CLI
    would, so C(stagecraft releases list) shows it and C(stagecraft rollback) can
    bring it back.
  - The record is written when the first phase play starts (the deploy lock), kept
    current as phases end, and finished with the run's result, its failed host and
    phase. A run killed on the way stays C(running) until the next stagecraft command
    finds its process gone and records it as interrupted.
  - Runs the stagecraft CLI starts are recorded by the CLI itself; this callback leaves
    them alone, and it records nothing in check mode.
  - Enable it in ansible.cfg (C(callbacks_enabled = stagecraft.platform.ledger)) or with
    C(ANSIBLE_CALLBACKS_ENABLED); the deploy and rollback playbooks refuse to run without
    it unless C(-e stagecraft_ledger=false).
author:
  - stagecraft maintainers (@stagecraft)
requirements:
  - the stagecraft Python package, importable by the Python that runs Ansible
"""

import json

from ansible import context
from ansible.plugins.callback import CallbackBase

_RELEASE_PLAYBOOKS = {"deploy.yml": "deploy", "rollback.yml": "rollback"}


def _field(result, name):
    """A task result's host, task or result dict (ansible-core 2.19 names them without
    the underscore)."""
    value = getattr(result, name, None)
    return value if value is not None else getattr(result, "_" + name, None)


class CallbackModule(CallbackBase):
    """Feeds the run's task results to stagecraft's ledger recorder."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "stagecraft.platform.ledger"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._action = None  # deploy or rollback, from the playbook's file name
        self._recorder = None
        self._release_dir = None  # the release directory the hosts switch to
        self._events = []
        self._play = None
        self._disabled = False
        self._failure = None  # (phase, host, message) of the first failure

    # ------------------------------------------------------------------ playbook

    def v2_playbook_on_start(self, playbook):
        name = str(getattr(playbook, "_file_name", "") or "").rsplit("/", 1)[-1]
        self._action = _RELEASE_PLAYBOOKS.get(name)

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()
        if self._action is None or self._disabled:
            return
        from stagecraft.deploy.outcome import phase_of

        phase = phase_of(self._play)
        if phase is None:
            return
        if self._recorder is None:
            try:
                self._start(play)
            except Exception as exc:  # the run goes on; say why nothing is recorded
                self._disabled = True
                self._display.warning(f"stagecraft.platform.ledger: this {self._action} is "
                                      f"not recorded in the ledger: {exc}")
                return
        if self._recorder is not None and phase in ("lock", "unlock"):
            self._recorder.phase_started(phase)

    def _start(self, play):
        """Record the release as running (nothing for CLI runs or check mode)."""
        variables = self._variables(play)
        if variables is None or context.CLIARGS.get("check"):
            self._disabled = True
            return
        from pathlib import Path

        from stagecraft.deploy.standalone import ReleaseInputs, release_record_inputs
        from stagecraft.ledger.model import ImageRecord, ReleaseAction, ReleaseHost
        from stagecraft.ledger.recorder import ReleaseRecorder
        from stagecraft.ledger.store import ReleaseNotFound

        release_id = str(variables["stagecraft_release_id"])
        environment = str(variables["stagecraft_environment"])
        inputs = ReleaseInputs(release_id=release_id,
                               images=dict(variables["stagecraft_images"]),
                               traefik_image=str(variables["stagecraft_traefik_image"]))
        found = release_record_inputs(Path(variables["stagecraft_config"]), environment, inputs)
        fleet = found.fleet
        states = dict(found.states)
        rollback_of = None
        if self._action == "rollback":
            rollback_of = release_id
            try:
                wanted = fleet.ledger.get(release_id, environment)
            except ReleaseNotFound:
                wanted = None
            if wanted is not None:  # hosts run what that release recorded
                states.update({name: host.state for name, host in wanted.hosts.items()})
        self._recorder = ReleaseRecorder.start(
            fleet.ledger, environment, fleet.project_dir, action=ReleaseAction(self._action),
            release_id=release_id, config_hash=fleet.env.config_hash(),
            message=str(variables.get("stagecraft_message") or ""), rollback_of=rollback_of,
            say=self._display.display)
        self._release_dir = release_id
        images = {name: ImageRecord(ref=ref, digest=None) for name, ref in inputs.images.items()}
        self._recorder.settle(images, {name: ReleaseHost(state=state)
                                       for name, state in states.items()})

    def _variables(self, play):
        """The variables of the run's first host, or None when stagecraft's CLI started
        the run (it records its own) or the run names no release."""
        manager = play.get_variable_manager()
        inventory = getattr(manager, "_inventory", None)
        hosts = inventory.get_hosts(play.hosts) if inventory is not None else []
        if not hosts:
            return None
        variables = manager.get_vars(play=play, host=hosts[0])
        if variables.get("stagecraft_inputs_checked"):
            return None
        needed = ("stagecraft_config", "stagecraft_environment", "stagecraft_release_id",
                  "stagecraft_images", "stagecraft_traefik_image")
        if not all(variables.get(name) for name in needed):
            return None
        if str(variables.get("stagecraft_ledger", True)).lower() in ("false", "no", "0"):
            return None
        # Plain values: Ansible's own string types do not reach stagecraft's renderers.
        wanted = (*needed, "stagecraft_message")
        return json.loads(json.dumps({name: variables.get(name) for name in wanted},
                                     default=str))

    # --------------------------------------------------------------- task results

    def _event(self, kind, result, ignore_errors=False):
        if self._recorder is None:
            return
        task = _field(result, "task")
        host = _field(result, "host")
        res = _field(result, "result") or {}
        self._events.append({"event": kind, "event_data": {
            "play": self._play, "host": host.get_name() if host is not None else None,
            "task": task.get_name() if task is not None else "",
            "resolved_action": getattr(task, "resolved_action", None) or
            getattr(task, "action", None),
            "ignore_errors": ignore_errors, "res": res}})

    def v2_runner_on_ok(self, result):
        self._event("runner_on_ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._event("runner_on_failed", result, ignore_errors=ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._event("runner_on_unreachable", result)

    def v2_runner_on_skipped(self, result):
        self._event("runner_on_skipped", result)

    # ---------------------------------------------------------------------- end

    def v2_playbook_on_stats(self, stats):
        if self._recorder is None:
            return
        from stagecraft.deploy.outcome import fold_outcomes, switched_hosts
        from stagecraft.errors import RunFailed
        from stagecraft.ledger.model import ReleaseResult

        phases = fold_outcomes(self._events)
        switched = switched_hosts(phases, self._release_dir)
        self._recorder.record_hosts(phases, switched)
        failure = None
        for phase_name, hosts in phases.items():
            for host, outcome in hosts.items():
                if outcome.status in ("failed", "unreachable") and failure is None:
                    failure = (phase_name, host, outcome.detail)
        if failure is None and not (stats.failures or stats.dark):
            self._recorder.phase_finished("finalize")
            self._recorder.finish(ReleaseResult.SUCCEEDED)
            return
        phase, host, detail = failure or ("rollout", None, "the run failed")
        message = f"{self._action} {self._release_dir} failed on {host or 'a host'} in " \
                  f"phase {phase}: {detail}"
        if switched:
            message += f"\nalready switched to {self._release_dir}: {', '.join(sorted(switched))}"
        else:
            message += "\nno host was switched"
        error = RunFailed(message, hint="see the ansible-playbook output above")
        self._recorder.finish(ReleaseResult.FAILED, error, phase=phase, host=host)
