# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The release_secrets action: one host's secret release files, rendered on the
controller by the stagecraft package (stagecraft.deploy.standalone)."""

from __future__ import annotations

import json

from ansible.plugins.action import ActionBase

_NEEDED = ("stagecraft_config", "stagecraft_environment", "stagecraft_release_id",
           "stagecraft_images", "stagecraft_traefik_image")


class ActionModule(ActionBase):
    """Returns ``files``, ``traefik_files`` and ``registry``, always no_log (errors say
    what is missing, never a value)."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        result["changed"] = False
        missing = [name for name in _NEEDED if name not in task_vars]
        if missing:
            result["failed"] = True
            result["msg"] = (
                "missing " + ", ".join(missing) + ": run with the stagecraft.platform.stagecraft "
                "inventory plugin and name the release (-e stagecraft_release=<id>)")
            return result
        try:
            from stagecraft.deploy.standalone import ReleaseInputs, secret_variables
            from stagecraft.errors import StagecraftError
        except ImportError as exc:
            result["failed"] = True
            result["msg"] = (f"the stagecraft package is not importable ({exc}): run Ansible "
                             "from the Python environment stagecraft is installed in")
            return result
        # Plain values: Ansible's own string types do not reach stagecraft's renderers.
        given = json.loads(json.dumps({name: task_vars[name] for name in _NEEDED}))
        inputs = ReleaseInputs(release_id=given["stagecraft_release_id"],
                               images=given["stagecraft_images"],
                               traefik_image=given["stagecraft_traefik_image"])
        try:
            found = secret_variables(given["stagecraft_config"],
                                     given["stagecraft_environment"],
                                     str(task_vars["inventory_hostname"]), inputs)
        except StagecraftError as exc:
            result["failed"] = True
            result["msg"] = exc.message + (f"\nhint: {exc.hint}" if exc.hint else "")
            return result
        result.update(found)
        # The files hold secrets: nothing of this result is ever shown or logged.
        result["_ansible_no_log"] = True
        return result
