"""What a no-op deploy loads: the deploy command's import path leaves out what only a
change needs (spec/cli/deploy.md). Each module named here cost tens of milliseconds
of every `stagecraft deploy` before it was made lazy (bench/rollout.py profiles it)."""

from __future__ import annotations

import subprocess
import sys

# Loaded only when something is built, run, issued or shown live.
NOT_FOR_A_NOOP = (
    "cryptography",  # the edge certificate is issued once, then read as text
    "rich",  # the live view, on a terminal only
    "stagecraft.providers.backend",  # image builds
    "stagecraft.deploy.playbook",  # the Ansible run
    "stagecraft.ansible.bundle",
    "ansible_runner",
)


def test_the_deploy_commands_import_path_leaves_out_what_a_change_needs() -> None:
    code = (
        "import sys\n"
        "import stagecraft.cli.main, stagecraft.cli.deploy, stagecraft.deploy.release\n"
        "import stagecraft.infra.tls, stagecraft.ui.progress, stagecraft.ui.plan\n"
        "import stagecraft.deploy.build, stagecraft.deploy.planning\n"
        "import stagecraft.hosts.fleet, stagecraft.providers.cloud.local\n"
        f"loaded = [m for m in {NOT_FOR_A_NOOP!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "", f"loaded on the no-op path: {result.stdout.strip()}"
