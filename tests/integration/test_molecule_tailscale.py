"""The tailscale role's Molecule scenario against a real Headscale (molecule/tailscale/).

The test starts Headscale v0.29.3 on a fresh Docker network (TLS from a CA made for
the test, its embedded DERP), makes a reusable pre-auth key tagged tag:molecule, and
hands Molecule the network, the login server's URL, the CA file, the key (in the
environment only), the Headscale container and the directory of the real tailscale
binaries (v1.102.5, built with Go on this machine). One host container from the host
image joins that network with /dev/net/tun and the role runs with
tailscale_install_method=binaries.

Steps (molecule.yml): refused.yml (on the new host, tags advertised with the pre-auth
key: the role fails with Headscale's reason and what to do), converge, idempotence,
verify, rejoin.yml (restart tailscaled, the role with no key: changed=0, same
address), started.yml (stopped tailscaled: the role's one change is the start, no
`tailscale up`), args.yml (another setting: `tailscale up` again, without the key),
verify, leave.yml twice (state absent; changed=0 the second time), verify_left.yml
(stopped, disabled, logged out, offline in Headscale). Afterwards Headscale still
holds exactly one node for the host: the rejoins registered no second one. The key
appears nowhere in Molecule's output or files.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from headscale_fixture import HeadscaleServer, headscale_server
from molecule_run import run_scenario

from stagecraft.providers.cloud.local.mesh_binaries import ensure_mesh_binaries

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

LABEL = "org.stagecraft.test=molecule-tailscale"
#: The key's tag; molecule.yml expects it on the node (molecule_expected_tags).
TAG = "tag:molecule"


@dataclass(frozen=True)
class Tailnet:
    server: HeadscaleServer
    auth_key: str
    timings: dict[str, float]


@pytest.fixture
def tailnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tailnet]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    binaries = ensure_mesh_binaries(print)
    timings["mesh binaries (cached or built)"] = time.monotonic() - started
    with headscale_server(tmp_path / "headscale", "stagecraft-tstest", LABEL,
                          timings) as server:
        started = time.monotonic()
        key = server.create_auth_key("molecule", tags=(TAG,))
        timings["user and tagged pre-auth key"] = time.monotonic() - started
        for name, value in {
            "NETWORK": server.network,
            "HEADSCALE": server.container,
            "LOGIN_SERVER": server.url,
            "CA_FILE": str(server.ca.cert_path),
            "AUTH_KEY": key,
            "BINARIES_DIR": str(binaries.tailscale.parent),
        }.items():
            monkeypatch.setenv(f"STAGECRAFT_TAILSCALE_{name}", value)
        yield Tailnet(server, key, timings)


def test_tailscale_scenario_joins_rejoins_without_a_key_and_leaves(
        tmp_path: Path, tailnet: Tailnet) -> None:
    run = run_scenario("tailscale", tmp_path / "run")

    # side_effect runs: refused.yml, rejoin.yml, started.yml, args.yml, leave.yml twice.
    refused, rejoin, started, args, leave, leave_again = (
        run.recap("side_effect", n) for n in range(6))
    # On the new host, advertised tags: `tailscale up` failed, after tailscaled was
    # installed; rescued twice: by the role (which fails with its message) and by the
    # playbook (which checked the message).
    assert refused["rescued"] == 2 and refused["failed"] == 0, refused
    assert _outcome(run.step_output("side_effect", 0), "Run tailscale up") == "fatal"

    converge = run.recap("converge")
    assert converge["failed"] == 0 and converge["changed"] > 0, converge
    assert _outcome(run.step_output("converge"), "Run tailscale up") == "changed"

    assert run.step_succeeded("idempotence"), run.tail()
    idempotence = run.recap("idempotence")
    assert idempotence["changed"] == 0 and idempotence["failed"] == 0, idempotence

    verifies = run.step_outputs("verify")
    assert len(verifies) == 3, f"verify ran {len(verifies)} times:\n{run.tail()}"
    for number in range(3):
        assert run.recap("verify", number)["failed"] == 0

    # Restarted tailscaled, no key: the role changed nothing and ran no `tailscale up`.
    assert rejoin["changed"] == 0 and rejoin["failed"] == 0, rejoin
    assert _outcome(run.step_output("side_effect", 1), "Run tailscale up") == "skipping"
    # Stopped tailscaled: the role started it (its one change) and ran no `tailscale up`.
    assert started["changed"] == 1 and started["failed"] == 0, started
    started_output = run.step_output("side_effect", 2)
    assert _outcome(started_output, "Make sure tailscaled runs now and at boot") == "changed"
    assert _outcome(started_output, "Run tailscale up") == "skipping"
    # Another setting, no key: `tailscale up` ran (keyless: no key file written) and the
    # new hash was kept, nothing else.
    assert args["changed"] == 2 and args["failed"] == 0, args
    args_output = run.step_output("side_effect", 3)
    assert _outcome(args_output, "Run tailscale up") == "changed"
    assert _outcome(args_output, "Hand the key to tailscale in a file only root reads") == (
        "skipping")
    # Leaving: logout, stop and disable, forget the hash; then nothing left to do.
    # One change: the transient unit that logs out, stops tailscaled and forgets the hash.
    assert leave["changed"] == 1 and leave["failed"] == 0, leave
    assert _outcome(run.step_output("side_effect", 4),
                    "Leave the tailnet and stop tailscaled in a few seconds") == "changed"
    assert leave_again["changed"] == 0 and leave_again["failed"] == 0, leave_again

    # The key never reached Molecule's output or the files it keeps (its inventory).
    assert tailnet.auth_key not in run.output
    for path in (tmp_path / "run" / "molecule").rglob("*"):
        if path.is_file():
            assert tailnet.auth_key not in path.read_text(errors="replace"), path

    # One node, the host's: restarting and starting tailscaled registered no other.
    nodes = tailnet.server.nodes()
    assert [n["given_name"] for n in nodes] == [run.host], nodes
    [node] = nodes
    assert node["tags"] == [TAG], node
    assert not node.get("online"), node

    timings = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in tailnet.timings.items())
    print(f"\nmolecule test -s tailscale: {run.elapsed:.0f} s (before it: {timings}); "
          f"refused {refused}, converge {converge}, idempotence {idempotence}, rejoin {rejoin}, "
          f"started {started}, args {args}, leave {leave}, leave again {leave_again}")


def _outcome(output: str, task: str) -> str:
    """What the role's task did in one step's output: changed, ok, skipping, ..."""
    # The first result line below the task's header (an error report may come first).
    match = re.search(rf"TASK \[stagecraft\.platform\.tailscale : {re.escape(task)}\][^\n]*\n"
                      r"(?:(?!TASK \[)[^\n]*\n)*?(\w+): \[", output)
    assert match, f"no task {task!r} in:\n{output[-3000:]}"
    return match.group(1)
