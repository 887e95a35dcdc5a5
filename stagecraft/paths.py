"""Where things live: the bundled Ansible content here, and stagecraft's root on a host.

In a checkout (or an editable install) playbooks/, roles/ and collections/ sit
next to the package; a wheel carries them under ``stagecraft/_bundled/``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

# stagecraft's directory on every host: <HOST_ROOT>/<project>/<environment>/ holds
# releases/, current, shared/, the lock, audit.log and traefik/. Every playbook
# gets it as the extra variable HOST_ROOT_VAR; the Ansible side repeats it only as
# defaults (playbooks/group_vars/all.yml, role defaults), which
# tests/unit/test_host_root.py keeps equal to this.
HOST_ROOT = "/opt/stagecraft"
HOST_ROOT_VAR = "stagecraft_root"


# The user bootstrap creates on every host; deploys connect as it on clouds whose
# hosts stop taking root logins (cloud `ssh`). The role's bootstrap_deploy_user.
DEPLOY_USER = "deploy"


def host_root_extravars() -> dict[str, str]:
    """The extra variable every playbook run gets, so no playbook relies on its default."""
    return {HOST_ROOT_VAR: HOST_ROOT}


@cache
def content_root() -> Path:
    """The directory that holds playbooks/, roles/ and collections/."""
    bundled = _PACKAGE_DIR / "_bundled"
    if (bundled / "playbooks").is_dir():
        return bundled
    checkout = _PACKAGE_DIR.parent
    if (checkout / "playbooks").is_dir():
        return checkout
    raise FileNotFoundError(
        f"stagecraft's Ansible content is missing: looked in {bundled} and {checkout}"
    )


def playbooks_dir() -> Path:
    return content_root() / "playbooks"


def roles_dir() -> Path:
    return content_root() / "roles"


def collections_dir() -> Path:
    """The path to put on ANSIBLE_COLLECTIONS_PATH (it contains ansible_collections/)."""
    return content_root() / "collections"
