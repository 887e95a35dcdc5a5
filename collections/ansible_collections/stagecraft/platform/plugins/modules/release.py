#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release
short_description: Upload, pull and roll out a release on a host in one call
version_added: 0.2.0
description:
  - Does on the host, in one module call, what M(stagecraft.platform.release_files) and
    the two phases of M(stagecraft.platform.compose_rollout) do in three. It writes the
    release's files, pulls the images the host lacks, then rolls the Compose project to
    the release without downtime (see those modules for each step).
  - O(steps) picks the steps. A deploy on hosts rolled in several batches first runs
    C(upload) and C(pull) on every host, then C(rollout) a batch at a time, so a failed
    pull stops the run before any host switches.
  - The result gives each step's own outcome and seconds under RV(steps), which the
    stagecraft CLI records in its ledger as the upload, pull and rollout phases.
  - One call rather than three saves a module transfer and a round trip per step and
    host; a deploy is as fast as its slowest host.
author:
  - stagecraft maintainers (@stagecraft)
options:
  steps:
    description: The steps to run, always in the order upload, pull, rollout.
    type: list
    elements: str
    choices: [upload, pull, rollout]
    default: [upload, pull, rollout]
  files:
    description:
      - The release's files, as for M(stagecraft.platform.release_files); needed by the
        C(upload) step. Their contents are never logged.
    type: list
    elements: dict
    suboptions:
      path:
        description: Path inside the release directory, relative, without C(..).
        type: str
        required: true
      content:
        description: The text of the file (written as UTF-8).
        type: str
        default: ""
      mode:
        description: An octal string like C("0600"), or the mode as a number (C(384)).
        type: raw
        default: "0644"
  project_name:
    description: The Compose project (C(<project>-<environment>)).
    type: str
    required: true
  base_dir:
    description: The environment's directory on the host (C(<stagecraft_root>/<project>/<environment>)).
    type: path
    required: true
  release_id:
    description: The release.
    type: str
    required: true
  registry:
    description: Registry login for the C(pull) step (see M(stagecraft.platform.compose_rollout)).
    type: dict
    suboptions:
      server:
        description: Registry host (and port).
        type: str
      username:
        description: User to log in as.
        type: str
      password:
        description: Password or token; passed on stdin, never logged or stored on the host.
        type: str
  start_stateful:
    description: With the C(pull) step, also create stateful services that have no container yet.
    type: bool
    default: false
  health_timeout:
    description: Seconds new containers have to become healthy.
    type: float
    default: 60
  drain:
    description: Seconds old containers keep serving in-flight requests after Traefik dropped them.
    type: float
    default: 10
  traefik_api:
    description: Traefik's API on this host, asked until it serves the new containers.
    type: str
    default: http://127.0.0.1:8080
  traefik_dir:
    description: The directory of Traefik's file provider (default C(<base_dir>/traefik/dynamic)).
    type: path
  traefik_timeout:
    description: Seconds Traefik has to show a servers file's change on its API.
    type: float
    default: 30
  force:
    description: Recreate stateful services whose definition changed.
    type: bool
    default: false
  keep_releases:
    description: Release directories kept on the host; the current one is never pruned.
    type: int
    default: 5
  action:
    description: What this run is, for the audit log.
    type: str
    default: deploy
    choices: [deploy, rollback]
  performer:
    description: Who runs it (C(user@machine)), for the audit log.
    type: str
    default: ""
attributes:
  check_mode:
    description: Can run in check mode; reports what each step would do without changing anything.
    support: full
    details: A new release is not written, so its rollout reports a change without reading it.
  diff_mode:
    description: Returns no diff; the result lists what each step did instead.
    support: none
  idempotent:
    description: Running it again for a release the host already runs changes nothing.
    support: full
seealso:
  - module: stagecraft.platform.release_files
  - module: stagecraft.platform.compose_rollout
"""

EXAMPLES = r"""
- name: Upload, pull and roll out the release
  stagecraft.platform.release:
    project_name: shop-production
    base_dir: /opt/stagecraft/shop/production
    release_id: 20261121T101500Z-3f9c2ab
    files: "{{ stagecraft_release_files }}"
    registry:
      server: registry.example.com
      username: deploy
      password: "{{ registry_password }}"
    drain: 5
    performer: alice@laptop

- name: Roll back to a release the host still has
  stagecraft.platform.release:
    project_name: shop-production
    base_dir: /opt/stagecraft/shop/production
    release_id: 20261120T091000Z-1a2b3c4
    steps: [pull, rollout]
    action: rollback
"""

RETURN = r"""
release_id:
  description: The release.
  returned: always
  type: str
steps:
  description:
    - Each step that ran, with its C(changed), its C(seconds) and its own result (as
      M(stagecraft.platform.release_files) or M(stagecraft.platform.compose_rollout)
      return it). On failure, the steps done and the failing one.
  returned: always
  type: dict
  sample: {"upload": {"changed": true, "seconds": 0.1}, "pull": {"changed": false, "seconds": 0.4},
           "rollout": {"changed": true, "seconds": 4.2}}
step:
  description: The step that failed.
  returned: failed
  type: str
services:
  description: The rollout step's per-service result (see M(stagecraft.platform.compose_rollout)).
  returned: the rollout step ran
  type: dict
current:
  description: The release C(current) points at afterwards (the previous one on failure).
  returned: the rollout step ran
  type: str
previous:
  description: The release C(current) pointed at before.
  returned: the rollout step ran
  type: str
routed:
  description: Routed services whose Traefik servers file this run wrote or removed.
  returned: the rollout step ran
  type: list
  elements: str
pruned:
  description: Release directories removed.
  returned: the rollout step ran
  type: list
  elements: str
pulled:
  description: The images pulled.
  returned: the pull step ran
  type: list
  elements: str
health:
  description: The last healthcheck outputs of the failing service's new containers.
  returned: failed
  type: dict
logs:
  description: The last 20 log lines of the failing service's new containers.
  returned: failed
  type: dict
timing:
  description:
    - The host's clock (seconds since the epoch) when the module's code started to load
      (C(loaded)), when its arguments were checked (C(ready)) and when it returned
      (C(ended)). Against the task's start and end on the controller, they show what a
      call costs outside the module (connection, transfer, interpreter start).
  returned: always
  type: dict
  sample: {"loaded": 1765100000.12, "ready": 1765100000.31, "ended": 1765100004.9}
"""

import time

# Before the imports below: the timing result tells their cost apart.
LOADED = time.time()

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.stagecraft.platform.plugins.module_utils._release import (  # noqa: E402
    ReleaseError,
    write_release,
)
from ansible_collections.stagecraft.platform.plugins.module_utils._rollout import (  # noqa: E402
    ComposeRollout,
    StepFailed,
)

STEPS = ("upload", "pull", "rollout")
# The rollout step's keys that the whole result carries too (the ledger reads them).
ROLLOUT_KEYS = ("services", "current", "previous", "routed", "pruned", "health", "logs")


def upload(module: AnsibleModule) -> dict:
    params = module.params
    if params["files"] is None:
        raise StepFailed("the upload step needs files (the release's rendered files)")
    try:
        return write_release(params["base_dir"], params["release_id"], params["files"],
                             check=module.check_mode)
    except ReleaseError as exc:
        raise StepFailed(str(exc)) from exc
    except OSError as exc:
        raise StepFailed(f"cannot write the release directory of {params['release_id']} "
                         f"in {params['base_dir']}: {exc}") from exc


def run(module: AnsibleModule) -> None:
    timing = {"loaded": round(LOADED, 3), "ready": round(time.time(), 3)}
    wanted = module.params["steps"]
    rollout = ComposeRollout(module, phase="rollout")
    work = {"upload": lambda: upload(module), "pull": rollout.pull, "rollout": rollout.rollout}
    result: dict = {"changed": False, "release_id": module.params["release_id"], "steps": {},
                    "timing": timing}
    for step in (name for name in STEPS if name in wanted):
        started = time.monotonic()
        try:
            outcome = work[step]()
        except StepFailed as exc:
            outcome = dict(exc.result, seconds=round(time.monotonic() - started, 2))
            result["steps"][step] = outcome
            result.update((key, outcome[key]) for key in ROLLOUT_KEYS if key in outcome)
            timing["ended"] = round(time.time(), 3)
            module.fail_json(msg=exc.message, step=step, **result)
            return
        outcome["seconds"] = round(time.monotonic() - started, 2)
        result["steps"][step] = outcome
        result["changed"] = result["changed"] or bool(outcome.get("changed"))
        if step == "pull":
            result["pulled"] = outcome.get("pulled", [])
        elif step == "rollout":
            result.update((key, outcome[key]) for key in ROLLOUT_KEYS if key in outcome)
    timing["ended"] = round(time.time(), 3)
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "steps": {"type": "list", "elements": "str", "choices": list(STEPS),
                      "default": list(STEPS)},
            # Only the contents are secret (see release_files).
            "files": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "path": {"type": "str", "required": True},
                    "content": {"type": "str", "default": "", "no_log": True},
                    "mode": {"type": "raw", "default": "0644"},
                },
            },
            "project_name": {"type": "str", "required": True},
            "base_dir": {"type": "path", "required": True},
            "release_id": {"type": "str", "required": True},
            "registry": {
                "type": "dict",
                "options": {
                    "server": {"type": "str"},
                    "username": {"type": "str"},
                    "password": {"type": "str", "no_log": True},
                },
            },
            "start_stateful": {"type": "bool", "default": False},
            "health_timeout": {"type": "float", "default": 60},
            "drain": {"type": "float", "default": 10},
            "traefik_api": {"type": "str", "default": "http://127.0.0.1:8080"},
            "traefik_dir": {"type": "path"},
            "traefik_timeout": {"type": "float", "default": 30},
            "force": {"type": "bool", "default": False},
            "keep_releases": {"type": "int", "default": 5},
            "action": {"type": "str", "default": "deploy", "choices": ["deploy", "rollback"]},
            "performer": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
