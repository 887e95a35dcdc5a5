#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_secrets
short_description: Resolve a host's secret release files on the controller
version_added: 0.1.0
description:
  - Renders the release the run names (C(stagecraft_release_id), set by the
    C(stagecraft.platform.stagecraft) inventory plugin from C(-e stagecraft_release=<id>))
    with the stagecraft Python package on the controller, and returns the files of this
    host that hold secrets (the services' env files, TLS keys) and the registry login.
  - Secrets come from the environment's secrets provider (for example C(.env.<env>)
    beside stagecraft.yml, or environment variables with C(STAGECRAFT_SECRETS=env)).
  - The result holds secrets, so it is always hidden from logs and callbacks as if the
    task had C(no_log), and it never changes anything.
  - An action plugin; it runs on the controller only. The deploy and rollback playbooks
    call it when the stagecraft CLI did not pass the secret files itself.
author:
  - stagecraft maintainers (@stagecraft)
options: {}
attributes:
  check_mode:
    description: Runs the same in check mode; it only reads on the controller and never
      changes anything.
    support: full
  diff_mode:
    description: Returns no diff; it never changes anything.
    support: none
  idempotent:
    description: It never changes anything, so it always reports no change.
    support: full
  platform:
    description: Runs on the controller only, so the target's platform does not matter.
    support: N/A
    platforms: all
requirements:
  - the stagecraft Python package, importable by the Python that runs Ansible
notes:
  - Reads the host variables C(stagecraft_config), C(stagecraft_environment),
    C(stagecraft_release_id), C(stagecraft_images) and C(stagecraft_traefik_image).
"""

EXAMPLES = r"""
- name: Resolve this host's secret files from the secrets provider
  stagecraft.platform.release_secrets:
  register: deploy_release_secrets
  no_log: true
"""

RETURN = r"""
files:
  description: The host's secret files of the release, as C({path, content, mode}).
  returned: success
  type: list
  elements: dict
traefik_files:
  description: The host's secret Traefik files (TLS keys), as C({path, content, mode}).
  returned: success
  type: list
  elements: dict
registry:
  description: The registry login (C(server), C(username), C(password)), empty without one.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.fail_json(msg="stagecraft.platform.release_secrets runs on the controller only "
                         "(it is an action plugin); call it as a task, not with ansible -m")


if __name__ == "__main__":
    main()
