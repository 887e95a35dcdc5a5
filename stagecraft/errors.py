"""The one error type tree of stagecraft.

Every error a user can cause or meet is a StagecraftError: it carries a message
(what is wrong, and where), a hint (what to do), and an exit code that is
documented in docs/cli/exit-codes.md. The CLI has one handler that prints
``error: ...`` and ``hint: ...`` to stderr and exits with that code; anything
else that escapes is a bug (exit 1, traceback with --debug).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal


class ExitCode(IntEnum):
    """Exit codes of the stagecraft CLI. Stable: scripts and CI depend on them."""

    OK = 0
    INTERNAL = 1  # a bug in stagecraft: please report it
    USAGE = 2  # bad command line (unknown option, missing argument)
    CONFIG = 3  # stagecraft.yml is missing or invalid
    STATE = 4  # local state (.stagecraft/) unreadable or inconsistent
    PLAN = 5  # the release cannot be planned
    RUN_FAILED = 6  # an Ansible run failed on one or more hosts
    LOCK_HELD = 7  # another deploy holds the lock
    PROVIDER = 8  # a provider (cloud, network, secrets, registry) failed
    COMMAND = 9  # an external command failed or timed out
    ENVIRONMENT = 10  # the machine lacks something stagecraft needs (Docker, ssh)
    CHANGES = 20  # `plan --detailed-exitcode`: the plan has changes (not an error)
    INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM


class StagecraftError(Exception):
    """Base of every error stagecraft reports to a user."""

    exit_code: ExitCode = ExitCode.INTERNAL
    default_hint: str | None = None
    # How the ledger records a release this error ends (the values of
    # stagecraft.ledger.model.ReleaseResult): failed, unless the code that raises it
    # knows every host had already switched (a post-deploy migration that failed).
    release_result: Literal["failed", "failed-after-switch"] = "failed"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def to_dict(self) -> dict:
        """The error as data, for ``--output json``."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class UsageError(StagecraftError):
    exit_code = ExitCode.USAGE


class ConfigError(StagecraftError):
    """stagecraft.yml cannot be read or is invalid. Carries every issue found."""

    exit_code = ExitCode.CONFIG
    default_hint = "fix the file and run `stagecraft validate`"

    def __init__(self, message: str, *, issues: list | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.issues = list(issues or [])

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["issues"] = [issue.to_dict() for issue in self.issues]
        return data


class StateError(StagecraftError):
    exit_code = ExitCode.STATE


class PlanError(StagecraftError):
    exit_code = ExitCode.PLAN


class RunFailed(StagecraftError):
    exit_code = ExitCode.RUN_FAILED


class LockHeld(StagecraftError):
    exit_code = ExitCode.LOCK_HELD
    default_hint = "wait for the other deploy, or inspect it with `stagecraft lock status`"


class ProviderError(StagecraftError):
    exit_code = ExitCode.PROVIDER


class SecretMissing(ProviderError):
    """A secret the release needs has no value in the secrets provider."""


class HostKeyChanged(ProviderError):
    """A server offers another host key than the one pinned for it (in the environment's
    known_hosts or the user's): it was reinstalled, or someone is in the middle."""


class CommandFailed(StagecraftError):
    """An external command exited non-zero, timed out, or could not start."""

    exit_code = ExitCode.COMMAND

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        output_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = list(argv or [])
        self.returncode = returncode
        self.output_tail = output_tail

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.update(argv=self.argv, returncode=self.returncode, output_tail=self.output_tail)
        return data


class HookFailed(CommandFailed):
    """A hook in .stagecraft/hooks/ exited non-zero or timed out: the deploy stops."""


class MigrationFailed(CommandFailed):
    """A migration command failed, timed out, or found an applied migration changed."""

    def __init__(self, message: str, *, output: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.output = output


class EnvironmentMissing(StagecraftError):
    """This machine lacks a tool or service stagecraft needs (Docker, ssh-keygen, ...)."""

    exit_code = ExitCode.ENVIRONMENT


class Interrupted(StagecraftError):
    exit_code = ExitCode.INTERRUPTED
    default_hint = "run the command again; it resumes from the recorded state"
