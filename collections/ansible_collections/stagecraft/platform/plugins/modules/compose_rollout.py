#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_rollout
short_description: Pull a release's images, or roll a Compose project to a release without downtime
version_added: 0.1.0
description:
  - Runs on the host, once per host per phase, on the release directory
    C(<base_dir>/releases/<release_id>/) written by M(stagecraft.platform.release_files).
  - "O(phase=pull): logs in to the registry (password on stdin, with a throwaway
    C(DOCKER_CONFIG) removed afterwards) and pulls the images of the release's
    C(compose.yml) that are not on the host already."
  - "O(phase=rollout): reads C(compose.yml) through C(docker compose config --format json)
    and compares each service's C(stagecraft.config-hash) label and replica count with
    the running containers. Services labelled C(stagecraft.strategy=rolling) are rolled:
    scaled up with C(--no-recreate), the new containers must become healthy within
    O(health_timeout), then they are written as the service's servers in Traefik's file
    provider (O(traefik_dir)) and, once Traefik's API shows exactly them, the old ones
    get O(drain) seconds for requests in flight and are stopped and removed.
    A failure removes the new containers and leaves the old ones serving.
    C(recreate) services are recreated with C(docker compose up); C(stateful) ones are
    created when missing and otherwise kept unless O(force). Services of the project
    missing from the file are removed. Then C(current) is switched to the release, a
    line is appended to C(audit.log), and releases beyond O(keep_releases) are pruned."
  - Needs the C(docker) CLI with the Compose v2 plugin on the host.
author:
  - stagecraft maintainers (@stagecraft)
options:
  project_name:
    description: The Compose project (C(<project>-<environment>)).
    type: str
    required: true
  base_dir:
    description: The environment's directory on the host (C(<stagecraft_root>/<project>/<environment>)).
    type: path
    required: true
  release_id:
    description: The release to pull or roll out; its directory must be on the host.
    type: str
    required: true
  phase:
    description: C(pull) the images, or C(rollout) the services.
    type: str
    required: true
    choices: [pull, rollout]
  registry:
    description:
      - Registry login for O(phase=pull). Without a username and password, images are
        pulled with the host's own Docker configuration.
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
  health_timeout:
    description: Seconds new containers have to become healthy.
    type: float
    default: 60
  drain:
    description: Seconds old containers keep serving in-flight requests after the load balancer dropped them.
    type: float
    default: 10
  traefik_api:
    description:
      - Traefik's API on this host. After writing a routed service's servers file, the
        rollout asks it until Traefik serves exactly the new containers, before old ones stop.
    type: str
    default: http://127.0.0.1:8080
  traefik_dir:
    description:
      - The directory Traefik's file provider watches, where routed services' servers
        files (C(servers-<service>.yml)) are written.
      - Default C(<base_dir>/traefik/dynamic), where the traefik role keeps it.
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
    description: Release directories kept on the host (the newest by id); the current one is never pruned.
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
  start_stateful:
    description:
      - With O(phase=pull), also create the release's stateful services that have no
        container yet and wait until they are ready (before pre-deploy migrations).
        Existing ones are kept.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode; reports the images it would pull or the action each
      service would get, without pulling, starting, stopping or switching anything.
    support: full
    details: Reports the action each service would get, and the pulls, without changing anything.
  diff_mode:
    description: Returns no diff; the result lists the action taken for each service instead.
    support: none
  idempotent:
    description: Pulling again pulls nothing once the images are on the host, and rolling out
      a release that already runs changes nothing.
    support: full
    details: When every service runs the desired definition, healthy, with its replica count, and C(current) points at the release, nothing is touched.
notes:
  - In check mode, a deploy whose release directory is not on the host yet (the upload
    was skipped) reports a change instead of failing.
seealso:
  - module: stagecraft.platform.release_files
  - module: stagecraft.platform.deploy_lock
"""

EXAMPLES = r"""
- name: Pull the images of the release
  stagecraft.platform.compose_rollout:
    project_name: shop-production
    base_dir: /opt/stagecraft/shop/production
    release_id: 20261121T101500Z-3f9c2ab
    phase: pull
    registry:
      server: registry.example.com
      username: deploy
      password: "{{ registry_password }}"

- name: Roll out the release
  stagecraft.platform.compose_rollout:
    project_name: shop-production
    base_dir: /opt/stagecraft/shop/production
    release_id: 20261121T101500Z-3f9c2ab
    phase: rollout
    health_timeout: 60
    drain: 10
    performer: alice@laptop
"""

RETURN = r"""
release_id:
  description: The release pulled or rolled out.
  returned: always
  type: str
  sample: 20261121T101500Z-3f9c2ab
images:
  description: Each image of the release and whether it was C(present) or C(pulled) (would be, in check mode).
  returned: phase is pull
  type: dict
  sample: {"registry.example.com/shop-web:20261121T101500Z-3f9c2ab": pulled}
pulled:
  description: The images pulled.
  returned: phase is pull
  type: list
  elements: str
services:
  description:
    - Per service, its C(action) (C(unchanged), C(created), C(rolled), C(recreated),
      C(removed), C(kept)), the C(containers) running for it afterwards (the removed
      ones for C(removed)), and the C(seconds) it took.
    - On failure, the services handled before the failing one.
  returned: phase is rollout
  type: dict
  sample: {"web": {"action": rolled, "containers": ["shop-production-web-3", "shop-production-web-4"], "seconds": 7.2}}
current:
  description: The release C(current) points at afterwards (the previous one on failure).
  returned: phase is rollout
  type: str
previous:
  description: The release C(current) pointed at before.
  returned: phase is rollout
  type: str
routed:
  description:
    - Routed services whose servers file (in C(traefik_dir)) this run wrote or removed;
      Traefik's API showed each change before the run went on.
  returned: phase is rollout
  type: list
  elements: str
  sample: [web]
pruned:
  description: Release directories removed.
  returned: phase is rollout
  type: list
  elements: str
health:
  description: The last healthcheck outputs of the failing service's new containers, by container name.
  returned: failed
  type: dict
logs:
  description: The last 20 log lines of the failing service's new containers, by container name.
  returned: failed
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stagecraft.platform.plugins.module_utils._rollout import ComposeRollout


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project_name": {"type": "str", "required": True},
            "base_dir": {"type": "path", "required": True},
            "release_id": {"type": "str", "required": True},
            "phase": {"type": "str", "required": True, "choices": ["pull", "rollout"]},
            "registry": {
                # Only the password is secret: no_log on the whole dict would mask the
                # server and user names wherever they appear in the result.
                "type": "dict",
                "options": {
                    "server": {"type": "str"},
                    "username": {"type": "str"},
                    "password": {"type": "str", "no_log": True},
                },
            },
            "health_timeout": {"type": "float", "default": 60},
            "drain": {"type": "float", "default": 10},
            "traefik_api": {"type": "str", "default": "http://127.0.0.1:8080"},
            "traefik_dir": {"type": "path"},
            "traefik_timeout": {"type": "float", "default": 30},
            "force": {"type": "bool", "default": False},
            "keep_releases": {"type": "int", "default": 5},
            "action": {"type": "str", "default": "deploy", "choices": ["deploy", "rollback"]},
            "start_stateful": {"type": "bool", "default": False},
            "performer": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    ComposeRollout(module).run()


if __name__ == "__main__":
    main()
