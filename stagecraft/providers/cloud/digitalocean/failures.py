"""What a failed run of the role `digitalocean` means when no API refusal explains it:
pure functions from the run's failure text (the modules' own words) and the droplets
the API has after it, to the error a user should see.

community.digitalocean's droplet module gives up on a droplet that does not reach a
status within its ``wait_timeout`` with ``Wait for Droplet [active,off] status
timeout`` (``[active]`` when it waits to power one off), and on an action (power on,
power off, resize) that does not complete in time with ``Wait for Droplet action
timeout``; neither names the droplet. The droplets themselves do: one still in status
``new`` is one DigitalOcean has not finished creating.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from stagecraft.errors import ProviderError
from stagecraft.providers.cloud.digitalocean import names

#: digital_ocean_droplet's wait_status(), when the droplet kept another status.
WAIT_STATUS_TIMEOUT = re.compile(r"Wait for Droplet \[(?P<statuses>[a-z,\s-]*)\] status timeout")
#: digital_ocean_droplet's wait_check_action(), when an action kept running.
WAIT_ACTION_TIMEOUT = "Wait for Droplet action timeout"
#: The status of a droplet DigitalOcean is still creating.
NEW = "new"
#: Where users change how long `infra up` waits.
SETTING = "providers.cloud.wait_timeout"


def waited_too_long(message: str) -> bool:
    """Whether a run's failure text is the droplet module giving up waiting."""
    return bool(WAIT_STATUS_TIMEOUT.search(message)) or WAIT_ACTION_TIMEOUT in message


def _duration(seconds: float) -> str:
    """``15s``, ``5m``, ``90s``: how stagecraft.yml would write ``seconds``."""
    whole = round(seconds)
    return f"{whole // 60}m" if whole >= 120 and whole % 60 == 0 else f"{whole}s"


def _named(droplets: Sequence[Mapping[str, Any]], project: str, environment: str) -> str:
    parts = []
    for droplet in droplets:
        host = names.host_of(project, environment, str(droplet.get("name")))
        parts.append(f"{droplet.get('name')} (host {host})" if host else str(droplet.get("name")))
    return ", ".join(parts)


def stuck_error(stuck: Sequence[Mapping[str, Any]], *, project: str, environment: str,
                wait_timeout: float) -> ProviderError:
    """The error for droplets that stayed in status ``new`` past ``wait_timeout``
    seconds (``stuck``: the API's droplets, at least one)."""
    ordered = sorted(stuck, key=lambda d: str(d.get("name")))
    which = ("droplet " if len(ordered) == 1 else "droplets ") + _named(ordered, project,
                                                                         environment)
    it = "it" if len(ordered) == 1 else "them"
    return ProviderError(
        f"{which} stayed in status `new` for more than {_duration(wait_timeout)}: "
        f"DigitalOcean has not finished creating {it}",
        hint=f"look at {it} in DigitalOcean's control panel (cloud.digitalocean.com) and "
        "at status.digitalocean.com; then run `stagecraft infra up` again: it finds the "
        f"droplet by its name and waits for it anew (raise {SETTING}, now "
        f"{_duration(wait_timeout)}, to wait longer). A droplet that never leaves `new` "
        "can be destroyed in the control panel: `stagecraft infra up` then creates it "
        "anew")


def wait_timeout_error(message: str, droplets: Sequence[Mapping[str, Any]], *, project: str,
                       environment: str, wait_timeout: float) -> ProviderError | None:
    """The error for a run that failed because the droplet module gave up waiting
    (``message``: the run's failure text; ``droplets``: the environment's droplets as
    the API has them now). None when ``message`` is not that."""
    if not waited_too_long(message):
        return None
    ours = [d for d in droplets
            if names.host_of(project, environment, str(d.get("name"))) is not None]
    stuck = [d for d in ours if d.get("status") == NEW]
    if stuck:
        return stuck_error(stuck, project=project, environment=environment,
                           wait_timeout=wait_timeout)
    match = WAIT_STATUS_TIMEOUT.search(message)
    what = (f"did not reach status {' or '.join(s.strip() for s in match['statuses'].split(','))}"
            if match else "did not finish an action (power on, power off or resize)")
    inactive = sorted((d for d in ours if d.get("status") != "active"),
                      key=lambda d: str(d.get("name")))
    now = ("; not active now: " + ", ".join(
        f"{_named([d], project, environment)} in status `{d.get('status')}`" for d in inactive)
        if inactive else "")
    return ProviderError(
        f"a droplet {what} within {_duration(wait_timeout)}{now}",
        hint="look at the droplets' history in DigitalOcean's control panel "
        "(cloud.digitalocean.com) and at status.digitalocean.com; then run `stagecraft "
        f"infra up` again: it finds the droplets by their names and carries on (raise "
        f"{SETTING}, now {_duration(wait_timeout)}, to wait longer)")
