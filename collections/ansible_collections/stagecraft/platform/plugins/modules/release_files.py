#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_files
short_description: Write a release's files to its own directory on the host, all at once
version_added: 0.1.0
description:
  - Writes O(files) into C(<base_dir>/releases/<release_id>/), which then holds exactly
    those files.
  - The directory is built beside its final place and renamed into it (or exchanged
    with the old one in one step), so a release directory is never seen half written.
  - When the directory already holds exactly these files with these modes, nothing is
    written.
  - In one module call rather than one C(copy) per file, since a release has a few small
    files and a deploy is as fast as its slowest host.
author:
  - stagecraft maintainers (@stagecraft)
options:
  base_dir:
    description:
      - The environment's directory (C(<stagecraft_root>/<project>/<environment>)); it must
        exist (the bootstrap role makes it). C(releases/) is created inside when missing.
    type: path
    required: true
  release_id:
    description: The release; letters, digits, C(.), C(_), C(-).
    type: str
    required: true
  files:
    description:
      - The files of the release. Their contents hold secrets (env files), so they are
        never logged.
    type: list
    elements: dict
    required: true
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
attributes:
  check_mode:
    description: Can run in check mode; reports whether the release directory would be
      written, without writing it.
    support: full
    details: Reports whether the directory would change; writes nothing.
  diff_mode:
    description: Returns no diff (the files hold secrets).
    support: none
  idempotent:
    description: When the release directory already holds exactly these files with these
      modes, nothing is written and the task reports no change.
    support: full
"""

EXAMPLES = r"""
- name: Write the release files
  stagecraft.platform.release_files:
    base_dir: /opt/stagecraft/shop/production
    release_id: 20261121T101500Z-3f9c2ab
    files:
      - path: compose.yml
        content: "{{ compose_text }}"
        mode: "0644"
      - path: env/api.env
        content: "DATABASE_URL={{ database_url }}\n"
        mode: "0600"
"""

RETURN = r"""
release_dir:
  description: The release directory.
  returned: always
  type: str
  sample: /opt/stagecraft/shop/production/releases/20261121T101500Z-3f9c2ab
files:
  description: The relative paths of the release's files.
  returned: always
  type: list
  elements: str
  sample: [compose.yml, env/api.env, release.json]
existed:
  description: Whether the release directory was there before.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stagecraft.platform.plugins.module_utils._release import (
    ReleaseError,
    write_release,
)


class ReleaseFiles:
    """Compare the wanted files with the release directory; rewrite it when they differ."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.base_dir = module.params["base_dir"]
        self.release_id = module.params["release_id"]
        self.entries = module.params["files"]

    def run(self) -> None:
        try:
            result = write_release(self.base_dir, self.release_id, self.entries,
                                   check=self.module.check_mode)
        except ReleaseError as exc:
            self.module.fail_json(msg=str(exc))
            return
        except OSError as exc:
            self.module.fail_json(msg=f"cannot write the release directory of "
                                      f"{self.release_id} in {self.base_dir}: {exc}")
            return
        self.module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "base_dir": {"type": "path", "required": True},
            "release_id": {"type": "str", "required": True},
            # Only the contents are secret: no_log on the whole list would also mask
            # paths and modes wherever they appear in the result.
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "str", "required": True},
                    "content": {"type": "str", "default": "", "no_log": True},
                    "mode": {"type": "raw", "default": "0644"},
                },
            },
        },
        supports_check_mode=True,
    )
    ReleaseFiles(module).run()


if __name__ == "__main__":
    main()
