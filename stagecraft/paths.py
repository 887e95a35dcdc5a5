"""Where the bundled Ansible content lives, from a repo checkout or an installed wheel.

In a checkout (or an editable install) playbooks/, roles/ and collections/ sit
next to the package; a wheel carries them under ``stagecraft/_bundled/``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


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
