#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stagecraft maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: Take, release or read the deploy lock of a stagecraft environment
version_added: 0.1.0
description:
  - The lock is the directory C(<base_dir>/lock), made with one atomic C(mkdir), holding
    C(info.json) with C(holder), C(pid), C(time), C(release), C(message) and C(command).
    The stagecraft CLI reads and writes the same format.
  - O(state=present) takes it; when someone else holds it the task fails with their
    details. Taking it again with the same O(holder), O(release) and O(command) (a
    rerun of the same deploy) changes nothing; the same holder with another release
    or command (a rollback after a failed deploy) takes it over.
  - O(state=absent) releases it. With O(holder) set, only a lock held by that holder
    (and O(release), when set) is removed; someone else's is left alone, with a warning.
    Without O(holder) any lock is removed (breaking a stale one).
  - O(state=query) only reads it.
author:
  - stagecraft maintainers (@stagecraft)
options:
  base_dir:
    description: The environment's directory (C(<stagecraft_root>/<project>/<environment>)); it must exist.
    type: path
    required: true
  state:
    description: Take (C(present)), release (C(absent)) or read (C(query)) the lock.
    type: str
    default: present
    choices: [present, absent, query]
  holder:
    description: Who takes or releases it, as C(user@machine).
    type: str
    default: ""
  release:
    description: The release being deployed.
    type: str
    default: ""
  note:
    description:
      - Why (shown to whoever finds the lock taken). Stored as C(message) in C(info.json).
    type: str
    default: ""
  command:
    description: The command holding it (C(deploy), C(rollback), ...).
    type: str
    default: deploy
  pid:
    description: Process id of the holder on its machine (0 when unknown).
    type: int
    default: 0
attributes:
  check_mode:
    description: Can run in check mode; reports whether the lock would be taken, taken over
      or released without creating, writing or removing anything.
    support: full
    details: Reports whether the lock would be taken or removed.
  diff_mode:
    description: Returns no diff; the result holds the lock's C(info) instead.
    support: none
  idempotent:
    description: Taking the lock again for the same holder, release and command, or releasing
      a lock that is not held, changes nothing.
    support: full
"""

EXAMPLES = r"""
- name: Take the deploy lock
  stagecraft.platform.deploy_lock:
    base_dir: /opt/stagecraft/shop/production
    holder: alice@laptop
    release: 20261121T101500Z-3f9c2ab
    note: hotfix for the checkout page

- name: Release the deploy lock taken above
  stagecraft.platform.deploy_lock:
    base_dir: /opt/stagecraft/shop/production
    state: absent
    holder: alice@laptop
    release: 20261121T101500Z-3f9c2ab

- name: Break a stale lock, whoever holds it
  stagecraft.platform.deploy_lock:
    base_dir: /opt/stagecraft/shop/production
    state: absent
"""

RETURN = r"""
lock_dir:
  description: The lock directory.
  returned: always
  type: str
  sample: /opt/stagecraft/shop/production/lock
held:
  description: Whether the lock is held after the task.
  returned: always
  type: bool
info:
  description: The holder's C(info.json) (null when nobody holds the lock).
  returned: always
  type: dict
  sample: {"holder": "alice@laptop", "pid": 4242, "time": "2026-11-21T10:15:00Z",
           "release": "20261121T101500Z-3f9c2ab", "message": "", "command": "deploy"}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stagecraft.platform.plugins.module_utils._lock import (
    UNKNOWN_HOLDER,
    LockInfo,
    lock_path,
    read_lock,
    release_lock,
    try_acquire,
    utc_now,
    write_info,
)


class DeployLock:
    """One call: take, release or read the lock."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.base_dir = self.params["base_dir"]
        self.lock_dir = lock_path(self.base_dir)

    def run(self) -> None:
        if not os.path.isdir(self.base_dir):
            self.module.fail_json(msg=f"{self.base_dir} does not exist: bootstrap the host first",
                                  lock_dir=self.lock_dir, held=False, info=None)
            return
        state = self.params["state"]
        if state == "present":
            self.take()
        elif state == "absent":
            self.release()
        else:
            held = read_lock(self.base_dir)
            self.finish(False, held)

    def wanted(self) -> LockInfo:
        return LockInfo(holder=self.params["holder"] or "unknown", pid=self.params["pid"],
                        time=utc_now(), release=self.params["release"],
                        message=self.params["note"], command=self.params["command"])

    def take(self) -> None:
        wanted = self.wanted()
        held = read_lock(self.base_dir)
        if held is None:
            if self.module.check_mode:
                self.finish(True, wanted)
                return
            if try_acquire(self.base_dir, wanted):
                self.finish(True, wanted)
                return
            held = read_lock(self.base_dir)  # taken between our read and our mkdir
        if held is not None and held.same_owner(wanted):
            self.finish(False, held)
            return
        if held is not None and held.holder == wanted.holder and held is not UNKNOWN_HOLDER:
            # Its own lock, for another release or command (a rollback after a failed
            # deploy): take it over.
            if not self.module.check_mode:
                write_info(self.base_dir, wanted)
            self.finish(True, wanted)
            return
        self.module.fail_json(
            msg=(f"the deploy lock {self.lock_dir} is {held.describe() if held else 'taken'}. "
                 "Wait for that run to finish; if it is gone, release the lock with "
                 "`stagecraft lock release` or this module with state=absent"),
            lock_dir=self.lock_dir, held=True, info=held.to_dict() if held else None)

    def release(self) -> None:
        held = read_lock(self.base_dir)
        if held is None:
            self.finish(False, None)
            return
        holder = self.params["holder"]
        release = self.params["release"]
        if holder and (held.holder != holder or (release and held.release != release)):
            self.module.warn(f"the deploy lock is {held.describe()}, not by {holder}: left alone")
            self.finish(False, held)
            return
        if not self.module.check_mode:
            release_lock(self.base_dir)
        self.finish(True, None)

    def finish(self, changed: bool, info: LockInfo | None) -> None:
        self.module.exit_json(changed=changed, lock_dir=self.lock_dir, held=info is not None,
                              info=info.to_dict() if info else None)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "base_dir": {"type": "path", "required": True},
            "state": {"type": "str", "default": "present",
                      "choices": ["present", "absent", "query"]},
            "holder": {"type": "str", "default": ""},
            "release": {"type": "str", "default": ""},
            "note": {"type": "str", "default": ""},
            "command": {"type": "str", "default": "deploy"},
            "pid": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    DeployLock(module).run()


if __name__ == "__main__":
    main()
