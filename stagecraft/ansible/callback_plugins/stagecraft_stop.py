"""Stop a playbook cleanly between tasks when stagecraft asks for it.

ansible-playbook has no "finish this task, then stop" command: SIGINT aborts
whatever is in flight, and it is not reliably handled. This callback gives
stagecraft that stop. Before every task, handler and play it checks for the
file named by STAGECRAFT_STOP_FILE; when it exists it raises KeyboardInterrupt.
At that moment the previous task has finished on every host and the next has
not been handed to any worker, so nothing is cut halfway. ansible-playbook
then exits as after Ctrl-C (rc 99), running its own clean-up.

The driver creates the file on Ctrl-C; an operator may too:
``touch .stagecraft/runs/<run id>/stop``.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: stagecraft_stop
type: aggregate
short_description: Stop the playbook between tasks when a stop file appears
description:
  - Before each task, handler and play, checks whether the file named by the
    E(STAGECRAFT_STOP_FILE) environment variable exists, and if so ends the run
    the way Ctrl-C does, before the next task starts on any host.
requirements:
  - enable in configuration (callbacks_enabled)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "stagecraft_stop"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._stop_file = os.environ.get("STAGECRAFT_STOP_FILE") or None

    def _stop_if_asked(self) -> None:
        if self._stop_file is not None and os.path.exists(self._stop_file):
            # KeyboardInterrupt, not an Exception: ansible's callback dispatch
            # turns exceptions into warnings, but lets this end the run.
            raise KeyboardInterrupt("stop requested by stagecraft")

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._stop_if_asked()

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._stop_if_asked()

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._stop_if_asked()
